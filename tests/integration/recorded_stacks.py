"""A recording's user stacks, symbolized and kept apart per process, with how the recorder
unwound each (its `user_unwinder` and `user_stop` columns). Shared by the unwinding tests and
benchmarks/unwind_vs_perf.py, which compares them with `perf script`'s stacks.

The symbolizer's Profiles merge processes of the same name and drop the unwinder columns, so
each sample row's `comm` is rewritten to carry pid, unwinder and stop before the rows reach
the engine; the root frame it makes is read back here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from profiles.model import Frame, FrameKind
from recording.reader import iter_batches
from symbolizer.engine import Engine
from symbolizer.options import SymbolizeOptions

# Where a complete user stack starts (root first): the process entry (_start, then glibc's
# __libc_start_main -> __libc_start_call_main -> main) or a thread's start (clone3 ->
# start_thread). Stripped executables (Debian's) have no name for _start: their outermost
# frame is `[sort]`, so the entry is looked for among the outermost three frames.
ENTRY_FUNCTIONS = frozenset({"_start", "__libc_start_main", "__libc_start_call_main",
                             "start_thread", "clone3", "clone", "__clone", "__clone3",
                             "__clone_internal"})
ENTRY_DEPTH = 3
# glibc's names for __libc_start_main: the versioned export and the symtab's implementation.
_ALIASES = {"__libc_start_main_impl": "__libc_start_main",
            "__libc_start_main_alias_2": "__libc_start_main"}
_SEP = "\x1f"  # not in any comm the recorder stores (the kernel keeps 15 bytes of the name)
_USER_KINDS = (FrameKind.USER, FrameKind.VDSO, FrameKind.JIT)


@dataclass(frozen=True)
class UserStack:
    pid: int
    comm: str
    unwinder: str | None  # the recording's user_unwinder
    stop: str | None  # user_stop
    frames: tuple[str, ...]  # user frames, root first (canonical names, see frame_name)
    # per frame: (object path, ELF address looked up: a return address minus 1, as
    # symbolizers look up the call, docs/recording-format.md), None where unmapped
    where: tuple[tuple[str | None, int | None], ...]
    count: int
    window_start_ns: int

    @property
    def leaf(self) -> str | None:
        return self.frames[-1] if self.frames else None


def canonical(name: str) -> str:
    """A function name without its symbol version (`memcpy@GLIBC_2.14`, perf's `@@`), glibc's
    aliases of __libc_start_main folded together."""
    base = name.split("@", 1)[0]
    return _ALIASES.get(base, base)


def frame_name(f: Frame) -> str:
    """The frame's function, or `[object name]` when it has none (a stripped executable's
    static functions: `sort+0x9b5e` becomes `[sort]`, as perf's `[unknown] (/usr/bin/sort)`
    is compared with it)."""
    if f.resolved:
        return canonical(f.name)
    return f"[{os.path.basename(f.object)}]" if f.object else "[unknown]"


def reaches_entry(frames: Sequence[str]) -> bool:
    """Root-first frames start at the process entry or a thread start."""
    return any(canonical(f) in ENTRY_FUNCTIONS for f in frames[:ENTRY_DEPTH])


def _tagged(batch: pa.RecordBatch) -> pa.RecordBatch:
    names = batch.schema.names
    if "user_unwinder" not in names:
        return batch
    records = batch.column("record").to_pylist()
    if "sample" not in records:
        return batch
    cols = {n: batch.column(n).to_pylist() for n in ("pid", "comm", "user_unwinder",
                                                     "user_stop")}
    comm = [_SEP.join((str(cols["pid"][i]), cols["comm"][i] or "", cols["user_unwinder"][i]
                       or "", cols["user_stop"][i] or "")) if r == "sample" else cols["comm"][i]
            for i, r in enumerate(records)]
    arrays = [pa.array(comm, type=batch.schema.field("comm").type) if n == "comm"
              else batch.column(n) for n in names]
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


def user_stacks(recording: str, options: SymbolizeOptions | None = None
                ) -> Iterator[UserStack]:
    """Every (window, process, stack) of the recording with a user stack."""
    engine = Engine(options or SymbolizeOptions(cache_dir=None))
    for b in iter_batches(recording):
        engine.feed_metadata(b)
    windows = [w for b in iter_batches(recording) for w in engine.feed(_tagged(b),
                                                                       metadata=False)]
    for window in windows + engine.finish():
        for profile in window:
            for stack, count in profile.stacks.items():
                pid, comm, unwinder, stop = stack[0].name.split(_SEP)
                user = [f for f in stack[1:] if f.kind in _USER_KINDS]
                if user:
                    yield UserStack(int(pid), comm, unwinder or None, stop or None,
                                    tuple(frame_name(f) for f in user),
                                    tuple((f.object, f.elf_addr) for f in user), count,
                                    profile.start_ns)
