"""Which code objects the recorder still has to read: once per (pid, code object, checksum).

After each drain the session gives the window's samples; the tracker picks the Python frames
(recording/pyframes.py) of processes that python_info found to be CPython, and reads the code
objects it has not read yet (recorder/python/code.py) while the processes live. A checksum is
part of the key: a freed code object's address may hold another code object later.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from recorder.python.code import read_code_objects
from recorder.python.process import PythonProcess
from recording.pyframes import code_objects
from recording.schema import Row

MAX_PER_PROCESS = 1 << 16  # code objects kept per process; beyond, the oldest are forgotten
MAX_SHARED = 1 << 13  # code objects of interpreter files kept for every process that maps them
_FIELDS = ("name", "path", "py_firstlineno", "py_linetable")


@dataclass(frozen=True)
class StaticCode:
    """Where a process's interpreter file keeps its initialized data. 3.11+ compile the
    modules the interpreter starts with (importlib, encodings, os, ...) into the binary as
    static code objects ("deep-frozen", Tools/build/deepfreeze.py), names and line tables
    included: every process of that file has the same ones at the same ELF addresses, and on
    a host that starts Python processes all the time they are most of the code objects read
    (55% of 5,248 in 20 s of ten `python3 -c 'import json, ssl, sqlite3'` a second). One read
    then names them for every later process of the same user (the owner: a process can
    rewrite its own copy of the data, so another user's cannot poison the names of ours)."""

    owner: tuple[int, str]  # (uid, object_id)
    bias: int
    spans: tuple[tuple[int, int], ...]  # ELF address ranges of the file's initialized data

    def key(self, addr: int, checksum: int) -> tuple[int, str, int, int] | None:
        elf = addr - self.bias
        for start, end in self.spans:
            if start <= elf < end:
                return (*self.owner, elf, checksum)
        return None


class CodeObjectTracker:
    def __init__(self) -> None:
        self._done: dict[int, dict[tuple[int, int], None]] = {}  # pid -> keys, in order
        self.static: dict[int, StaticCode] = {}
        self._shared: OrderedDict[tuple[int, str, int, int], tuple[object, ...]] = OrderedDict()
        self.rows_written = 0
        self.shared_hits = 0

    def rows(self, samples: Iterable[tuple[int, list[int]]],
             processes: dict[int, PythonProcess], time_ns: int) -> list[Row]:
        """`pycode` rows for the new code objects of (pid, user_stack) samples."""
        wanted: dict[int, dict[tuple[int, int], None]] = {}
        for pid, stack in samples:
            if pid not in processes:
                continue
            done = self._done.get(pid, {})
            for key in code_objects(stack):
                if key not in done:
                    wanted.setdefault(pid, {})[key] = None
        return self._read(wanted, processes, time_ns)

    def read(self, pid: int, keys: Iterable[tuple[int, int]],
             processes: dict[int, PythonProcess], time_ns: int) -> list[Row]:
        """`pycode` rows for those of these (code_addr, checksum) not read yet."""
        if pid not in processes:
            return []
        done = self._done.get(pid, {})
        new = {key: None for key in keys if key not in done}
        return self._read({pid: new}, processes, time_ns) if new else []

    def _read(self, wanted: dict[int, dict[tuple[int, int], None]],
              processes: dict[int, PythonProcess], time_ns: int) -> list[Row]:
        out: list[Row] = []
        for pid, keys in wanted.items():
            info = processes[pid]
            static = self.static.get(pid)
            to_read = list(keys)
            if static is not None:
                to_read = []
                for addr, checksum in keys:
                    shared = static.key(addr, checksum)
                    fields = self._shared.get(shared) if shared else None
                    if fields is None:
                        to_read.append((addr, checksum))
                        continue
                    self._shared.move_to_end(shared)  # type: ignore[arg-type]
                    self.shared_hits += 1
                    row: Row = {"record": "pycode", "time_ns": time_ns, "pid": pid,
                                "addr": addr, "py_checksum": checksum,
                                "py_version": f"{info.version[0]}.{info.version[1]}"}
                    row.update(zip(_FIELDS, fields, strict=True))  # type: ignore[typeddict-item]
                    out.append(row)
            got = read_code_objects(pid, to_read, info.version, info.types, time_ns)
            if static is not None:
                self._remember(static, got)
            out += got
            done = self._done.setdefault(pid, {})
            done.update(keys)
            while len(done) > MAX_PER_PROCESS:
                del done[next(iter(done))]
        self.rows_written += len(out)
        return out

    def _remember(self, static: StaticCode, rows: list[Row]) -> None:
        for row in rows:
            shared = static.key(row["addr"], row["py_checksum"])  # type: ignore[arg-type]
            if shared is not None and not row.get("reason"):
                self._shared[shared] = tuple(row.get(f) for f in _FIELDS)
                self._shared.move_to_end(shared)
        while len(self._shared) > MAX_SHARED:
            self._shared.popitem(last=False)

    def forget(self, pid: int) -> None:
        """The process exited or exec'd: its code objects are gone."""
        self._done.pop(pid, None)
        self.static.pop(pid, None)
