"""Python frames in a recording: the recorder's side of bpf/python.h.

Each new snapshot of a process is checked for a CPython interpreter (process.py); a supported
one gets its `pyprocs` entry (kernel.py), so the BPF walker records its Python frames, and
after each drain the code objects those frames name are read while the process lives
(tracker.py), as `pycode` rows written with that drain's window. An unsupported version is
said once, in one line, and keeps its native frames.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable

from recorder.btf import task_fsbase_offset
from recorder.objects import ObjectFacts
from recorder.procfs import Mapping
from recorder.python.kernel import pyproc_entry
from recorder.python.process import PythonProcess, Unsupported, python_info
from recorder.python.tracker import CodeObjectTracker, StaticCode
from recording.schema import Row


class PythonFrames:
    def __init__(self, set_entry: Callable[[int, bytes | None], None], proc: str = "/proc",
                 log: Callable[[str], None] | None = None, eager_seconds: float = 0.0) -> None:
        self._set_entry = set_entry  # (pid, packed py_proc_t or None to drop it)
        # how long after its snapshot a process's new code objects come as events (read at
        # once: read_now) rather than at the drain after their samples only
        self._eager_ns = int(eager_seconds * 1e9)
        self.proc = proc
        self.processes: dict[int, PythonProcess] = {}
        self.tracker = CodeObjectTracker()
        self.unsupported: dict[str, int] = {}  # reason -> processes
        self._log = log or (lambda line: print(f"ebpf-record: {line}", file=sys.stderr))
        # parsed now, before sampling starts: the kernel's BTF takes 0.25-0.5 s to scan, which
        # at the first 3.8-3.10 process delayed its entry (and every snapshot after it)
        task_fsbase_offset()

    def on_snapshot(self, pid: int, mappings: list[Mapping], added: bool = False,
                    facts: dict[str, ObjectFacts] | None = None,
                    uid: int | None = None) -> None:
        """added: the snapshot only adds mappings to the previous one (no exec, the same
        process): an interpreter found before is still there, its entry still set. facts:
        the snapshot's objects by path, and uid the process's owner: with both, the code
        objects in the interpreter file's own data are read once per file and owner
        (tracker.StaticCode)."""
        if added and pid in self.processes:
            return
        info = python_info(pid, mappings, self.proc)
        if isinstance(info, PythonProcess):
            if self.processes.get(pid) != info:
                self.tracker.forget(pid)  # a new interpreter (exec): old code objects are gone
                self.processes[pid] = info
            obj = (facts or {}).get(info.object_path)
            if obj is not None and uid is not None:
                self.tracker.static[pid] = StaticCode(
                    (uid, obj.object_id), info.bias,
                    tuple((p["vaddr"], p["vaddr"] + p["filesz"]) for p in obj.phdrs
                          if p["filesz"]))
            # set even when unchanged: BPF drops the entry at exec and at exit (a new process
            # of a reused pid, or a non-PIE python exec'ing itself, looks the same here)
            eager_until = time.monotonic_ns() + self._eager_ns if self._eager_ns else 0
            self._set_entry(pid, pyproc_entry(info, eager_until_ns=eager_until))
            return
        if pid in self.processes:  # exec'd into something else
            self.forget(pid)
        if isinstance(info, Unsupported):
            # once per reason, whichever object says it: a process's first snapshot may name
            # its executable, a later one its libpython (pyenv's 3.6 links one)
            why = info.reason.split(": ", 1)[-1]  # the reason ends in "native frames only"
            if why not in self.unsupported:
                self._log(f"pid {pid}: {info.reason}")
            self.unsupported[why] = self.unsupported.get(why, 0) + 1

    def rows(self, samples: Iterable[tuple[int, list[int]]], time_ns: int) -> list[Row]:
        """`pycode` rows for the code objects new in these (pid, user_stack) samples."""
        if not self.processes:
            return []
        return self.tracker.rows(samples, self.processes, time_ns)

    def read_now(self, pid: int, keys: Iterable[tuple[int, int]], time_ns: int) -> list[Row]:
        """`pycode` rows for the code objects of `pid` the BPF program saw first (those not
        read yet), while the process still lives: one that exits before the drain after its
        samples would leave them unnamed."""
        return self.tracker.read(pid, keys, self.processes, time_ns)

    def forget(self, pid: int) -> None:
        if self.processes.pop(pid, None) is not None:
            self._set_entry(pid, None)
        self.tracker.forget(pid)
