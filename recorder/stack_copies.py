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
from unwind.cache import TableCache
from unwind.reference import ProcessTables, Regs, StackMemory, unwind
from unwind.table import UnwindTable

# struct copy_t: tgid, len, kernel_error, kernel_len, pc, sp, bp, comm; then kernel[127], data
_HEADER = struct.Struct("<IIiIQQQ16s")
_KERNEL_AT = _HEADER.size
_DATA_AT = _KERNEL_AT + 8 * MAX_STACK_DEPTH
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
    waited: int = 0


def parse_copy(raw: bytes) -> StackCopy | None:
    """A record of the `copies` ring; None when it is too short to be one."""
    if len(raw) < _DATA_AT:
        return None
    tgid, length, kerr, klen, pc, sp, bp, comm = _HEADER.unpack_from(raw)
    klen = min(klen, MAX_STACK_DEPTH)
    # bpf_get_stack can leave zero entries, as in the sampled stacks: not frames
    kernel = tuple(a for a in struct.unpack_from(f"<{klen}Q", raw, _KERNEL_AT) if a)
    data = raw[_DATA_AT:_DATA_AT + min(length, len(raw) - _DATA_AT)]
    return StackCopy(tgid, comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
                     Regs(pc, sp, bp), data, kernel, kerr or None)


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
            unwinder = f"{r.unwinder}+copy" if r.unwinder else "copy"
            counts[(c.tgid, c.comm, r.frames, c.kernel, c.kernel_error, unwinder, r.stop)] += 1
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
