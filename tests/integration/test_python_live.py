"""recorder/python against live interpreters of every supported version: python_info finds
the runtime, the walker finds the main thread and its frames via the generated offsets, and
read_code_objects reads the names and lines the interpreter itself reports."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from recorder.procfs import Mapping, read_exec_mappings
from recorder.python.code import read_code_objects
from recorder.python.memory import ProcessMemory
from recorder.python.process import PythonProcess, Unsupported, python_info
from recorder.python.walk import python_threads
from recording.pyframes import code_checksum
from symbolizer.python import compute_line
from tests.helpers.pyversions import PYENV, interpreters

TARGET = Path(__file__).with_name("pydata") / "target.py"


def _wait_blocked_in_stdin_read(pid: int) -> None:
    """Until the target sleeps in read(0, ...): between its report and that read, its stack
    still holds the frames of print() and json."""
    for _ in range(500):
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
        if fields[:2] == ["0", "0x0"]:  # x86-64 read(2) on fd 0
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never blocked reading stdin")


@pytest.fixture(params=interpreters())
def live(request):
    """(version, interpreter, its JSON report, PythonProcess) of a blocked target."""
    version, exe = request.param
    proc = subprocess.Popen([exe, str(TARGET)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        report = json.loads(proc.stdout.readline())
        _wait_blocked_in_stdin_read(proc.pid)
        info = python_info(proc.pid, read_exec_mappings(f"/proc/{proc.pid}/maps"))
        yield version, exe, report, info, proc
    finally:
        proc.kill()
        proc.wait()


def test_python_info_finds_the_interpreter(live):
    version, _, _, info, proc = live
    assert isinstance(info, PythonProcess), info
    assert info.version == version
    if version >= (3, 11):
        assert info.version_hex is not None and info.version_hex >> 16 == 0x0300 | version[1]
    # the eval loop lies in an executable mapping of the interpreter object; _PyRuntime may
    # be in .bss, past the file's data, so it is checked by reading it
    maps = Path(f"/proc/{proc.pid}/maps").read_text().splitlines()
    spans = [(int(a, 16), int(b, 16), line.split()[1], line.split()[-1]) for line in maps
             for a, b in [line.split()[0].split("-")]]
    for addr in (info.eval_start, info.eval_end - 1):
        assert any(s <= addr < e and "x" in perms and p == info.object_path
                   for s, e, perms, p in spans), hex(addr)
    assert ProcessMemory(proc.pid).read(info.runtime_addr, 64) is not None


def test_walker_finds_the_main_thread_and_its_frames(live):
    version, _, report, info, _ = live
    threads = python_threads(info)
    main = [t for t in threads if t.thread_id == report["ident"]]
    assert len(main) == 1, [hex(t.thread_id) for t in threads]
    if version >= (3, 11):
        assert main[0].native_thread_id == report["native_id"]
    frames = main[0].frames
    assert [f.code_addr for f in frames] == [addr for addr, _ in report["stack"]]
    # the instruction each frame is at gives the line the interpreter reports for it
    rows = read_code_objects(info.pid, [(f.code_addr, f.checksum) for f in frames],
                             info.version, info.types)
    for frame, row, (_, line) in zip(frames, rows, report["stack"], strict=True):
        assert row.get("reason") is None, row
        got = compute_line(version, row["py_linetable"], row["py_firstlineno"],
                           frame.instr_index)
        assert got == line, (row["name"], frame.instr_index)


def test_code_objects_read_with_their_names(live):
    version, _, report, info, _ = live
    wanted = [(c["id"], code_checksum(c["firstlineno"], c["argcount"]))
              for c in report["codes"]]
    rows = read_code_objects(info.pid, wanted, info.version, info.types, time_ns=5)
    for code, row in zip(report["codes"], rows, strict=True):
        assert row.get("reason") is None, row
        # co_qualname from 3.11; co_name before (no class)
        assert row["name"] == (code["qualname"] if version >= (3, 11) else code["name"])
        assert row["path"] == code["filename"]
        assert row["py_firstlineno"] == code["firstlineno"]
        assert row["record"] == "pycode" and row["pid"] == info.pid
        assert row["py_version"] == f"{version[0]}.{version[1]}" and row["time_ns"] == 5
        assert row["py_linetable"]


def test_bad_reads_become_reasons(live):
    _, _, report, info, proc = live
    code = report["codes"][0]
    good = code_checksum(code["firstlineno"], code["argcount"])
    rows = read_code_objects(info.pid, [(code["id"], good ^ 1), (0x10, good),
                                        (report["codes"][0]["id"] + 8, good)],
                             info.version, info.types)
    assert "checksum" in rows[0]["reason"]
    assert "unreadable" in rows[1]["reason"]
    assert "wrong type" in rows[2]["reason"]  # not the start of a code object
    assert all(r.get("name") is None for r in rows)
    proc.kill()
    proc.wait()
    gone = read_code_objects(info.pid, [(code["id"], good)], info.version, info.types)
    assert "unreadable" in gone[0]["reason"]


@pytest.mark.parametrize("build", ["2.7.18", "3.6.15", "3.7.16"])
def test_old_versions_unsupported_with_a_reason(build):
    minor = build.rsplit(".", 1)[0]
    exe = PYENV / build / "bin" / f"python{minor}"
    if not exe.exists():
        pytest.skip(f"no {exe}")
    # "ready" once the interpreter runs, so libpython is mapped (a hundred reads of the maps
    # without it were not always enough on a loaded machine)
    proc = subprocess.Popen([str(exe), "-c", "import sys; print('ready'); sys.stdout.flush(); "
                             "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        maps = read_exec_mappings(f"/proc/{proc.pid}/maps")
        info = python_info(proc.pid, maps)
    finally:
        proc.kill()
        proc.wait()
    assert isinstance(info, Unsupported)
    assert f"CPython {minor} is not supported" in info.reason and "\n" not in info.reason


def test_non_python_and_stripped_objects(tmp_path):
    assert python_info(os.getpid(), [Mapping(0x1000, 0x2000, "r-xp", 0, "08:01", 1,
                                             "/usr/bin/bash")]) is None
    # a static interpreter with no symbol tables: named like python3.11, but no _PyRuntime
    src, stripped = tmp_path / "s.c", tmp_path / "python3.11"
    src.write_text("void _start(void) { for (;;) ; }\n")
    subprocess.run(["cc", "-static", "-nostdlib", "-s", "-o", str(stripped), str(src)],
                   check=True, capture_output=True)
    proc = subprocess.Popen(["sleep", "30"])
    try:
        # pid of a live process, the object read through its root (no map_files entry)
        info = python_info(proc.pid, [Mapping(0x1000, 0x2000, "r-xp", 0, "08:01", 1,
                                              str(stripped))])
    finally:
        proc.kill()
        proc.wait()
    assert isinstance(info, Unsupported)
    assert "no _PyRuntime or _PyEval_EvalFrameDefault symbol" in info.reason


def test_tracker_reads_each_code_object_once(live):
    from recorder.python.tracker import CodeObjectTracker
    from recording.pyframes import encode_frame

    _, _, report, info, _ = live
    code = report["codes"][0]
    pair = encode_frame(code["id"], code_checksum(code["firstlineno"], code["argcount"]), 0)
    stack = [0x401000, *pair, 0x402000]
    tracker = CodeObjectTracker()
    rows = tracker.rows([(info.pid, stack), (info.pid, stack), (1, stack)], {info.pid: info},
                        time_ns=1)
    assert [(r["pid"], r["addr"], r.get("reason")) for r in rows] == [
        (info.pid, code["id"], None)]
    assert tracker.rows([(info.pid, stack)], {info.pid: info}, time_ns=2) == []
    tracker.forget(info.pid)
    assert len(tracker.rows([(info.pid, stack)], {info.pid: info}, time_ns=3)) == 1
