"""User stacks copied by the BPF program (bpf/profile.c `copies`), unwound here.

A sample of a process the kernel has no mapping list for yet (its first milliseconds) comes
with a copy of its user stack (8 KiB from rsp - 128, as perf --call-graph dwarf keeps one per
sample) and its registers. Once the recorder has read the process's mappings and its objects'
tables exist, the copy is unwound with the pure-Python twin of the BPF unwinder
(unwind/reference.py) over the same tables, so the process's first samples are as complete
as the rest. A copy waits for at most COPY_WAIT_DRAINS drains for its process's tables;
after that it is unwound with what there is (frame pointers where nothing else).
"""

from __future__ import annotations

import bisect
import struct
from collections import Counter
from dataclasses import dataclass

from recorder.bpf_program import MAX_STACK_DEPTH, StackCount
from recorder.unwinder import KernelTables
from recording.pyframes import CODE_ADDR_MASK, PY_FRAME_TAG, all_native
from unwind.cache import TableCache
from unwind.reference import ProcessTables, Regs, StackMemory, unwind
from unwind.table import UnwindTable

# struct copy_t: tgid, len, kernel_error, kernel_len, pc, sp, bp, comm, eval_start, eval_end,
# py_len, pad; then kernel[127], py[127], data
_HEADER = struct.Struct("<IIiIQQQ16sQQII")
_KERNEL_AT = _HEADER.size
_PY_AT = _KERNEL_AT + 8 * MAX_STACK_DEPTH
_DATA_AT = _PY_AT + 8 * MAX_STACK_DEPTH
# closes each activation's Python frames in py[] (bpf/python.h); never in a recorded stack
PY_ACTIVATION_END = PY_FRAME_TAG | CODE_ADDR_MASK
RED_ZONE = 128
COPY_WAIT_DRAINS = 2
# Tables kept in memory for the copies (a busy machine starts processes of the same few objects
# all the time; loading each from the disk cache again cost a core): 16 MiB of rows at most,
# the least recently used dropped first (the cache the CopyUnwinder shares with the table
# loader; session.py).
MEMO_BYTES = 16 << 20


# what drain() counts copies by: (tgid, comm, user frames, kernel frames, kernel error,
# unwinder, stop)
_CountKey = tuple[int, str, tuple[int, ...], tuple[int, ...], int | None, str, str]


@dataclass
class StackCopy:
    tgid: int
    comm: str
    regs: Regs
    data: bytes
    kernel: tuple[int, ...]
    kernel_error: int | None
    # the Python frames read at the sample: one tuple of (A, B) pairs per C activation of
    # _PyEval_EvalFrameDefault, innermost first, and that function's range in the process
    python: tuple[tuple[int, ...], ...] = ()
    eval_range: tuple[int, int] = (0, 0)
    waited: int = 0

    def python_pairs(self) -> list[int]:
        """Every Python frame's (A, B) pair, as a stack holds them (for the code objects)."""
        return [v for activation in self.python for v in activation]


def parse_copy(raw: bytes) -> StackCopy | None:
    """A record of the `copies` ring; None when it is too short to be one."""
    if len(raw) < _DATA_AT:
        return None
    (tgid, length, kerr, klen, pc, sp, bp, comm, eval_start, eval_end, py_len,
     _pad) = _HEADER.unpack_from(raw)
    klen = min(klen, MAX_STACK_DEPTH)
    # bpf_get_stack can leave zero entries, as in the sampled stacks: not frames
    kernel = tuple(a for a in struct.unpack_from(f"<{klen}Q", raw, _KERNEL_AT) if a)
    slots = struct.unpack_from(f"<{min(py_len, MAX_STACK_DEPTH)}Q", raw, _PY_AT)
    data = raw[_DATA_AT:_DATA_AT + min(length, len(raw) - _DATA_AT)]
    return StackCopy(tgid, comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
                     Regs(pc, sp, bp), data, kernel, kerr or None,
                     _activations(slots), (eval_start, eval_end))


def _activations(slots: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """py[] cut at its PY_ACTIVATION_END markers; an unclosed tail (the walk's step limit) is
    the start of an activation whose frames are not all there: kept, as the in-kernel walk
    keeps what it read before its depth limit."""
    out: list[tuple[int, ...]] = []
    current: list[int] = []
    i = 0
    while i < len(slots):
        if slots[i] == PY_ACTIVATION_END:
            out.append(tuple(current))
            current = []
            i += 1
        elif i + 1 < len(slots):
            current += slots[i:i + 2]
            i += 2
        else:
            break
    if current:
        out.append(tuple(current))
    return tuple(out)


def with_python(frames: tuple[int, ...], copy: StackCopy) -> tuple[tuple[int, ...], bool]:
    """The unwound native frames (leaf first) with the copy's Python frames put where the
    BPF walk puts them (bpf/python.h, py_before_native): each activation's frames just before
    (leaf side of) its _PyEval_EvalFrameDefault frame, the k-th such frame from the leaf
    taking the k-th activation. Cut at MAX_STACK_DEPTH entries without splitting a pair, as
    the kernel's walk stops. Returns the stack and whether it was cut."""
    start, end = copy.eval_range
    if not copy.python or start >= end:
        return frames, False
    out: list[int] = []
    pending = iter(copy.python)
    for pc in frames:
        if start <= pc < end:
            for i in range(0, len(activation := next(pending, ())), 2):
                if len(out) + 2 > MAX_STACK_DEPTH:
                    return tuple(out), True
                out += activation[i:i + 2]
        if len(out) >= MAX_STACK_DEPTH:
            return tuple(out), True
        out.append(pc)
    return tuple(out), False


class CopyUnwinder:
    def __init__(self, tables: KernelTables, cache: TableCache) -> None:
        self._tables = tables
        self._cache = cache
        self.pending: list[StackCopy] = []
        self.unwound = 0

    def add(self, copy: StackCopy) -> None:
        self.pending.append(copy)

    def drain(self, final: bool = False) -> list[StackCount]:
        """Counts of the copies whose process has its tables now (all of them if final)."""
        counts: Counter[_CountKey] = Counter()
        later: list[StackCopy] = []
        memo: dict[int, ProcessTables | None] = {}
        by_pid: dict[int, list[StackCopy]] = {}
        for c in self.pending:
            by_pid.setdefault(c.tgid, []).append(c)
        for c in self.pending:
            if c.tgid not in memo:
                memo[c.tgid] = self._process_tables(c.tgid, by_pid[c.tgid])
            tables = memo[c.tgid]
            if tables is None and not final and c.waited < COPY_WAIT_DRAINS:
                c.waited += 1
                later.append(c)
                continue
            mem = StackMemory(c.regs.sp - RED_ZONE, c.data)
            r = unwind(c.regs, tables, mem.read_u64, MAX_STACK_DEPTH)
            frames, cut = with_python(r.frames, c)
            unwinder = r.unwinder or ""
            if not all_native(frames):  # as the BPF walk sets UNWINDER_PYTHON
                unwinder = f"{unwinder}+python" if unwinder else "python"
            unwinder = f"{unwinder}+copy" if unwinder else "copy"
            stop = "depth" if cut else r.stop
            counts[(c.tgid, c.comm, frames, c.kernel, c.kernel_error, unwinder, stop)] += 1
            self.unwound += 1
        self.pending = later
        return [StackCount(tgid=t, comm=comm, user_stack=frames, kernel_stack=kernel,
                           user_stack_error=None if frames else -14,
                           kernel_stack_error=None if kernel else (kerr or -14), count=n,
                           user_unwinder=unwinder if frames else None,
                           user_stop=stop if frames else None)
                for (t, comm, frames, kernel, kerr, unwinder, stop), n in counts.items()]

    def _process_tables(self, pid: int, copies: list[StackCopy]) -> ProcessTables | None:
        """The process's mappings with the tables the kernel has (or would have) for them:
        those an unwind of these copies can reach only. Every pc an unwind looks up is the
        sampled one or a word of the copied stack, so a mapping that holds none of them is
        never searched, and its table (libLLVM's: millions of rows) is not loaded."""
        entries = self._tables.mappings_of(pid)
        if entries is None:
            return None
        entries = sorted(entries, key=lambda e: e[0])
        reach = _reached([e for e in entries if e[4] is not None], copies)
        out = []
        for start, end, bias, build_id, path in entries:
            table = None
            # the kernel has its table (path): the same one, by build ID
            if path is not None and start in reach:
                table = self._table(path, build_id)
            out.append((start, end, bias, table))
        return ProcessTables(out)

    def _table(self, path: str, build_id: str | None) -> UnwindTable | None:
        # by build ID: the path is the process's own (/proc/PID/map_files/...)
        got = self._cache.table_for(path, build_id)
        return got if isinstance(got, UnwindTable) else None


def _reached(entries: list[tuple[int, int, int, str | None, str | None]],
             copies: list[StackCopy]) -> set[int]:
    """Starts of the (sorted) mappings that a pc or a stack word of the copies falls in. The
    words are deduplicated and cut to the mappings' span first (in C: a set, a comparison):
    most are data, stack or heap addresses, and a system-wide run unwinds hundreds of copies
    of 1,024 words per drain."""
    if not entries:
        return set()
    starts = [e[0] for e in entries]
    ends = [e[1] for e in entries]
    lo, hi = starts[0], max(ends)
    words = {c.regs.pc for c in copies}
    for c in copies:
        words.update(memoryview(c.data[:len(c.data) & ~7]).cast("Q"))
    reach: set[int] = set()
    for word in words:
        if lo <= word <= hi:
            for pc in (word, word - 1):  # a return address is looked up at ra - 1
                i = bisect.bisect_right(starts, pc) - 1
                if i >= 0 and pc < ends[i]:
                    reach.add(starts[i])
    return reach
