"""recorder/python/frames.py: what each process snapshot does to the `pyprocs` entries."""

from __future__ import annotations

import time

from recorder.objects import ObjectFacts
from recorder.python import frames
from recorder.python import tracker as tracker_module
from recorder.python.kernel import PY_PROC
from recorder.python.offsets import OFFSETS
from recorder.python.process import PythonProcess, Unsupported


def _info(pid: int, runtime: int = 0x1000) -> PythonProcess:
    return PythonProcess(pid=pid, version=(3, 11), version_hex=None, object_path="/py",
                         bias=0, runtime_addr=runtime, eval_start=0x2000, eval_end=0x3000,
                         code_type=None, unicode_type=None, bytes_type=None,
                         offsets=OFFSETS[(3, 11)])


def _hook(monkeypatch, answers):
    calls: list[tuple[int, bool]] = []
    logged: list[str] = []
    it = iter(answers)
    monkeypatch.setattr(frames, "python_info", lambda pid, mappings, proc: next(it))
    pf = frames.PythonFrames(lambda pid, entry: calls.append((pid, entry is not None)),
                             log=logged.append)
    return pf, calls, logged


def test_an_unchanged_interpreter_gets_its_entry_again(monkeypatch):
    # BPF drops the entry at exec and exit; the next snapshot must put it back even when
    # the process looks the same (a non-PIE python exec'ing itself, a reused pid)
    pf, calls, _ = _hook(monkeypatch, [_info(7), _info(7)])
    pf.on_snapshot(7, [])
    pf.tracker._done[7] = {(1, 2): None}
    pf.on_snapshot(7, [])
    assert calls == [(7, True), (7, True)]
    assert 7 in pf.tracker._done  # the same interpreter: its code objects stay read


def test_a_new_interpreter_forgets_the_code_objects_read(monkeypatch):
    pf, calls, _ = _hook(monkeypatch, [_info(7), _info(7, runtime=0x5000)])
    pf.on_snapshot(7, [])
    pf.tracker._done[7] = {(1, 2): None}
    pf.on_snapshot(7, [])
    assert calls == [(7, True), (7, True)] and 7 not in pf.tracker._done


def test_an_unsupported_version_is_said_once_in_one_line(monkeypatch):
    why = "CPython 3.7 is not supported; native frames only"
    # the executable in the first snapshot, its libpython in later ones: the same reason
    reasons = [f"python3.7: {why}", f"libpython3.7m.so.1.0: {why}", f"libpython3.7m.so.1.0: {why}"]
    pf, calls, logged = _hook(monkeypatch, [Unsupported(p, r) for p, r in zip((1, 2, 3), reasons,
                                                                             strict=True)])
    for pid in (1, 2, 3):
        pf.on_snapshot(pid, [])
    assert logged == [f"pid 1: {reasons[0]}"] and calls == []
    assert pf.unsupported == {why: 3}


def test_exec_into_something_else_drops_the_entry(monkeypatch):
    pf, calls, _ = _hook(monkeypatch, [_info(7), None])
    pf.on_snapshot(7, [])
    pf.on_snapshot(7, [])
    assert calls == [(7, True), (7, False)] and 7 not in pf.processes


def test_a_snapshot_that_only_adds_mappings_keeps_the_entry_set(monkeypatch):
    # an import's extension modules: no exec since, the interpreter and its entry stay
    pf, calls, _ = _hook(monkeypatch, [_info(7), None])
    pf.on_snapshot(7, [])
    pf.on_snapshot(7, [], added=True)
    assert calls == [(7, True)] and 7 in pf.processes
    pf.on_snapshot(8, [], added=True)  # not known as Python: looked at (the answer: no)
    assert 8 not in pf.processes


def test_a_new_entry_is_eager_for_the_set_time(monkeypatch):
    entries: list[bytes | None] = []
    monkeypatch.setattr(frames, "python_info", lambda pid, mappings, proc: _info(pid))
    before = time.monotonic_ns()
    frames.PythonFrames(lambda pid, entry: entries.append(entry),
                        eager_seconds=2.0).on_snapshot(7, [])
    frames.PythonFrames(lambda pid, entry: entries.append(entry)).on_snapshot(8, [])
    after = time.monotonic_ns()
    # the last field of struct py_proc_t, compared with bpf_ktime_get_ns (CLOCK_MONOTONIC)
    eager = [PY_PROC.unpack(e)[-1] for e in entries if e is not None]
    assert before + 2_000_000_000 <= eager[0] <= after + 2_000_000_000
    assert eager[1] == 0  # not eager: code objects are read at the drains only


def test_read_now_reads_each_code_object_once(monkeypatch):
    read: list[tuple[int, list[tuple[int, int]]]] = []

    def fake_read(pid, wanted, version, types, time_ns):
        keys = list(wanted)
        read.append((pid, keys))
        return [{"record": "pycode", "pid": pid, "addr": a, "py_checksum": c} for a, c in keys]

    monkeypatch.setattr(tracker_module, "read_code_objects", fake_read)
    pf, _calls, _ = _hook(monkeypatch, [_info(7)])
    pf.on_snapshot(7, [])
    assert len(pf.read_now(7, [(0x10, 1), (0x20, 2)], 0)) == 2
    # sent again (the BPF map forgot it) or met in a drained sample: not read again
    assert pf.read_now(7, [(0x10, 1), (0x30, 3)], 0)[0]["addr"] == 0x30
    assert pf.rows([(7, [0xC0DE000000000010, 1 << 32])], 0) == []
    assert pf.read_now(9, [(0x10, 1)], 0) == []  # not a Python process the recorder knows
    assert read == [(7, [(0x10, 1), (0x20, 2)]), (7, [(0x30, 3)])]


def test_interpreter_file_code_objects_are_read_once_per_file_and_owner(monkeypatch):
    read: list[tuple[int, list[tuple[int, int]]]] = []

    def fake_read(pid, wanted, version, types, time_ns):
        keys = list(wanted)
        read.append((pid, keys))
        return [{"record": "pycode", "pid": pid, "addr": a, "py_checksum": c,
                 "name": f"f{a:x}", "path": "<frozen importlib._bootstrap>",
                 "py_firstlineno": 1, "py_linetable": b"\x01"} for a, c in keys]

    monkeypatch.setattr(tracker_module, "read_code_objects", fake_read)
    pf, _calls, _ = _hook(monkeypatch, [_info(p) for p in (7, 8, 9)])
    # the interpreter file's data at ELF 0x9f0000-0xa40000 (bias 0: non-PIE, as Debian's)
    facts = {"/py": ObjectFacts("obj-1", "/py", "b1", "EXEC",
                                [{"offset": 0, "vaddr": 0x9F0000, "filesz": 0x50000,
                                  "memsz": 0x60000, "flags": 6}], 1, "08:01")}
    pf.on_snapshot(7, [], facts=facts, uid=1000)
    pf.on_snapshot(8, [], facts=facts, uid=1000)
    pf.on_snapshot(9, [], facts=facts, uid=0)
    static, heap = (0xA2C028, 4), (0x7F0000001000, 5)
    assert len(pf.read_now(7, [static, heap], 0)) == 2
    got = pf.read_now(8, [static, heap], 0)
    # process 8 (same file, same user): the static one from the first read, with its own pid
    assert read == [(7, [static, heap]), (8, [heap])]
    row = next(r for r in got if r["addr"] == static[0])
    assert row["pid"] == 8 and row["name"] == "fa2c028" and row["py_linetable"] == b"\x01"
    assert pf.tracker.shared_hits == 1
    pf.read_now(9, [static], 0)  # another user: its process could have rewritten the data
    assert read[-1] == (9, [static])
    # a checksum that differs is another object (or none): read
    pf.read_now(8, [(static[0], 99)], 0)
    assert read[-1] == (8, [(static[0], 99)])
