"""Python frames in the symbolizer: a synthetic recording whose user stacks hold (code object,
instruction) pairs among native frames, with `pycode` rows for some code objects. Frames are
named `file.py qualname` (as Pyroscope's pyperf names them) with their line computed from the
recorded line table, sit above the native frame that ran them, are marked as Python in every
output, and a code object without a row is `[python code 0x...]`, counted in the report."""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cli_common.command import run
from recording.elf import elf_info_of_path
from recording.pyframes import code_checksum, encode_frame
from recording.schema import SCHEMA, rows_to_batch
from symbolizer.cli import symbolize_main
from tests.helpers.crafted import BASE, T0, nm_address
from tests.receiver.pprof_decode import decode_pprof

_addr2line = ctypes.pythonapi.PyCode_Addr2Line
_addr2line.argtypes = [ctypes.py_object, ctypes.c_int]
_addr2line.restype = ctypes.c_int


class Worker:
    def run(self, n):
        total = 0
        for i in range(n):
            total += i
        return total


def handler():
    return Worker().run(3)


RUN, HANDLER = Worker.run.__code__, handler.__code__
RUN_ADDR, HANDLER_ADDR, LOST_ADDR, BAD_ADDR = 0x7F00_1000_0000, 0x7F00_1000_1000, \
    0x7F00_2000_0000, 0x7F00_3000_0000
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _index_on_line(code, line: int) -> int:
    """An instruction of `code` on `line`, as the interpreter maps them (and its check)."""
    for i in range(len(code.co_code) // 2):
        if _addr2line(code, 2 * i) == line:
            return i
    raise AssertionError(line)


def _pycode_row(addr, code, reason=None):
    row = {"record": "pycode", "time_ns": T0, "pid": 4242, "addr": addr,
           "py_checksum": code_checksum(code.co_firstlineno, code.co_argcount),
           "py_version": VERSION, "reason": reason}
    if reason is None:
        row.update(name=code.co_qualname, path=code.co_filename,
                   py_firstlineno=code.co_firstlineno, py_linetable=code.co_linetable)
    return row


@pytest.fixture
def recording(tmp_path, fixture_bins):
    exe = fixture_bins / "workload-pie"
    info = elf_info_of_path(str(exe))
    text = next(s for s in info.loads if s.flags & 1)

    def native(name, off=0):
        return BASE + nm_address(exe, name) - text.vaddr + off

    run_line = RUN.co_firstlineno + 4  # `total += i`
    handler_line = HANDLER.co_firstlineno + 1
    run_i, handler_i = _index_on_line(RUN, run_line), _index_on_line(HANDLER, handler_line)
    csum = code_checksum(RUN.co_firstlineno, RUN.co_argcount)
    # leaf first: C code called from Python, the two Python frames the eval loop (here
    # run_rounds) runs, the eval loop, an unknown Python frame, main
    stack = [native("alpha", 4),
             *encode_frame(RUN_ADDR, csum, run_i),
             *encode_frame(HANDLER_ADDR, code_checksum(HANDLER.co_firstlineno, 0), handler_i),
             native("run_rounds", 9),
             *encode_frame(LOST_ADDR, 77, 0),
             *encode_frame(BAD_ADDR, csum, 0),
             native("main", 5)]
    rows = [
        {"record": "meta", "key": "sample_rate_hz", "value": "100"},
        {"record": "process", "pid": 4242, "maps_seq": 0, "time_ns": T0, "comm": "py"},
        {"record": "mapping", "pid": 4242, "maps_seq": 0, "start": BASE,
         "end": BASE + 0x10000, "file_offset": text.offset, "path": str(exe),
         "perms": "r-xp", "object_id": "obj-1"},
        {"record": "object", "object_id": "obj-1", "path": str(exe), "build_id": info.build_id,
         "elf_type": info.elf_type,
         "phdrs": [{"offset": s.offset, "vaddr": s.vaddr, "filesz": s.filesz,
                    "memsz": s.memsz, "flags": s.flags} for s in info.loads]},
        _pycode_row(RUN_ADDR, RUN), _pycode_row(HANDLER_ADDR, HANDLER),
        _pycode_row(BAD_ADDR, RUN, reason="co_qualname unreadable at 0x10"),
        {"record": "sample", "window_start_ns": T0, "window_end_ns": T0 + 10**9,
         "pid": 4242, "comm": "py", "count": 9, "user_stack": stack, "kernel_stack": [],
         "kernel_stack_error": -14},
        {"record": "window", "window_start_ns": T0, "window_end_ns": T0 + 10**9, "count": 9},
    ]
    out = tmp_path / "py.parquet"
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA),
                   out)
    return out, run_line, handler_line


def _symbolize(tmp_path, rec, fmt, capsys):
    out = tmp_path / f"out.{fmt}"
    rc = run("ebpf-symbolize", symbolize_main, [str(rec), "--format", fmt, "--out", str(out),
                                                "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    return out.read_bytes(), capsys.readouterr().err


def test_folded_names_python_frames_between_native_ones(tmp_path, recording, capsys):
    rec, _, _ = recording
    text, err = _symbolize(tmp_path, rec, "folded", capsys)
    stacks = [line for line in text.decode().splitlines() if not line.startswith("#")]
    file = Path(__file__).name
    assert stacks == [
        f"py;main;[python code {BAD_ADDR:#x}];[python code {LOST_ADDR:#x}];run_rounds;"
        f"{file} handler;{file} Worker.run;alpha 9"]
    # both unknown code objects are in the report, with why
    assert "[python]: 9 samples: code object not recorded" in err
    assert "[python]: 9 samples: code object unreadable: co_qualname unreadable" in err


def _pprof_functions_and_lines(body: bytes):
    """function name -> (filename, start_line, set of lines of its locations)."""
    prof = decode_pprof(body)
    st = prof.string_table
    lines: dict[int, set[int]] = {}
    for loc in prof.location:
        for line in loc.line:
            lines.setdefault(line.function_id, set()).add(line.line)
    return {st[f.name]: (st[f.filename], f.start_line, lines.get(f.id, set()))
            for f in prof.function}


def test_pprof_has_file_line_and_start_line(tmp_path, recording, capsys):
    rec, run_line, handler_line = recording
    body, _ = _symbolize(tmp_path, rec, "pprof", capsys)
    funcs = _pprof_functions_and_lines(body)
    file = Path(__file__).name
    assert funcs[f"{file} Worker.run"] == (__file__, RUN.co_firstlineno, {run_line})
    assert funcs[f"{file} handler"] == (__file__, HANDLER.co_firstlineno, {handler_line})
    assert funcs[f"[python code {LOST_ADDR:#x}]"] == ("", 0, {0})


def test_speedscope_and_html_mark_python_frames(tmp_path, recording, capsys):
    rec, _, _ = recording
    doc = json.loads(_symbolize(tmp_path, rec, "speedscope", capsys)[0])
    frames = {f["name"]: f for f in doc["shared"]["frames"]}
    run_frame = frames[f"{Path(__file__).name} Worker.run"]
    assert run_frame["file"] == __file__ and run_frame["line"] == RUN.co_firstlineno
    assert "line" not in frames["alpha"]
    html = _symbolize(tmp_path, rec, "html", capsys)[0].decode()
    data = json.loads(html.split('<script type="application/json" id="profile-data">', 1)[1]
                      .split("</script>", 1)[0])
    python = data["kinds"].index("python")
    kinds = {e[0]: data["kinds"][e[1]] for e in data["names"]}
    assert kinds[f"{Path(__file__).name} Worker.run"] == "python"
    assert kinds["alpha"] == "user" and python >= 0


def test_first_native_entry_is_the_sampled_instruction_even_after_python_pairs():
    from recording.pyframes import native_entries

    a, b = encode_frame(0x1000, 5, 3)
    # sampled inside the eval loop: BPF puts its Python frames before (leaf side of) it
    stack = [a, b, 0x5000, 0x6000]
    assert list(native_entries(stack)) == [(0x5000, False), (0x6000, True)]
    # without Python entries, the plain order: every entry but the leaf is a return address
    assert list(native_entries([1, 2])) == [(1, False), (2, True)]
