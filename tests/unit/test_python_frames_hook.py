"""recorder/python/frames.py: what each process snapshot does to the `pyprocs` entries."""

from __future__ import annotations

from recorder.python import frames
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
