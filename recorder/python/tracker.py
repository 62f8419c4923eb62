"""Which code objects the recorder still has to read: once per (pid, code object, checksum).

After each drain the session gives the window's samples; the tracker picks the Python frames
(recording/pyframes.py) of processes that python_info found to be CPython, and reads the code
objects it has not read yet (recorder/python/code.py) while the processes live. A checksum is
part of the key: a freed code object's address may hold another code object later.
"""

from __future__ import annotations

from collections.abc import Iterable

from recorder.python.code import read_code_objects
from recorder.python.process import PythonProcess
from recording.pyframes import code_objects
from recording.schema import Row

MAX_PER_PROCESS = 1 << 16  # code objects kept per process; beyond, the oldest are forgotten


class CodeObjectTracker:
    def __init__(self) -> None:
        self._done: dict[int, dict[tuple[int, int], None]] = {}  # pid -> keys, in order
        self.rows_written = 0

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
            out += read_code_objects(pid, keys, info.version, info.types, time_ns)
            done = self._done.setdefault(pid, {})
            done.update(keys)
            while len(done) > MAX_PER_PROCESS:
                del done[next(iter(done))]
        self.rows_written += len(out)
        return out

    def forget(self, pid: int) -> None:
        """The process exited or exec'd: its code objects are gone."""
        self._done.pop(pid, None)
