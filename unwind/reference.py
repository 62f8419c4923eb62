"""A pure-Python twin of bpf/profile.c's user-stack unwinder, over the same tables.

`unwind(regs, tables, read_u64)` walks a stack exactly as `unwind_user` does in the kernel:
the same frame record, mapping search, pc - 1 rule, CFA rules, frame-pointer fallback with
its checks, stop reasons, unwinder bits and depth limit. It needs no root and no BPF, so
unit tests can check tables on captured stacks, and the recorder can unwind a copied stack
for a process whose tables were not in the kernel yet. The functions below carry the names
of their BPF counterparts; a change to one must be made to the other (the unit tests pin the
shared constants to bpf/profile.c and recorder/bpf_program.py).

Arithmetic is on u64 like the BPF registers: sums wrap modulo 2**64, an s32/s16 offset is
sign-extended, and `(u64)row->rbp_offset` makes a negative PLT threshold never reached.
`read_u64(addr)` returns None for a read the kernel's bpf_probe_read_user would fail (a
`StackMemory` fails outside the captured bytes); bad memory, registers or rows end the walk
with a stop reason, never an exception.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from unwind.table import (
    CFA_END,
    CFA_PLT,
    CFA_RBP,
    CFA_RSP,
    CFA_SIGNAL,
    CFA_UNDEFINED,
    RBP_AT_CFA,
    RBP_SAME,
    ROW,
    UnwindTable,
)

MASK = (1 << 64) - 1

# bpf/profile.c's limits.
MAX_STACK_DEPTH = 127   # perf's default kernel.perf_event_max_stack
FRAMES_PER_CALL = 8
MAX_TAIL_CALLS = 30
MAX_MAPPINGS = 256      # recorder/bpf_program.py set_mappings keeps the lowest 256 by start
ROW_SEARCH_STEPS = 24
# unwind_user gives up after MAX_TAIL_CALLS programs of FRAMES_PER_CALL frames each (STOP_DEPTH)
MAX_FRAMES_WALKED = FRAMES_PER_CALL * MAX_TAIL_CALLS

# UNWINDER_* bits and STOP_* codes: the names are what a recording stores
# (recorder/bpf_program.py unwinder_name/STOP_NAMES, docs/recording-format.md).
UNWINDER_DWARF = 1
UNWINDER_FP = 2
UNWINDER_NAMES: dict[int, str | None] = {0: None, 1: "dwarf", 2: "fp", 3: "dwarf+fp"}
(STOP_NONE, STOP_ENTRY, STOP_FP_END, STOP_DEPTH, STOP_READ_FAULT, STOP_UNSUPPORTED,
 STOP_BAD_FRAME, STOP_ZERO_PC) = range(8)
STOP_NAMES = ("none", "entry", "fp-end", "depth", "read-fault", "unsupported", "bad-frame",
              "zero-pc")

_U64 = struct.Struct("<Q")

ReadU64 = Callable[[int], int | None]


@dataclass(frozen=True)
class Regs:
    """The user registers the sample interrupted (pt_regs ip, sp, bp)."""

    pc: int
    sp: int
    bp: int


@dataclass(frozen=True)
class UnwindResult:
    frames: tuple[int, ...]   # absolute pcs: the interrupted pc, then return addresses
    unwinder: str | None      # "dwarf", "fp", "dwarf+fp", or None (no step was taken)
    stop: str                 # STOP_NAMES; a recording has none for an empty stack


class StackMemory:
    """read_u64 over a copy of user memory taken at `base`. Copy a stack from rsp - 128 (the
    x86-64 red zone) up, not from rsp: GCC's epilogue CFI keeps a register "saved at CFA-N"
    after popping it, so the BPF unwinder reads it below rsp (libc's __strcoll_l, in sort)."""

    __slots__ = ("base", "data", "end")

    def __init__(self, base: int, data: bytes | bytearray | memoryview) -> None:
        self.base = base
        self.data = bytes(data)
        self.end = base + len(self.data)

    def read_u64(self, addr: int) -> int | None:
        if addr < self.base or addr + 8 > self.end:
            return None  # outside the copy: what bpf_probe_read_user would fail
        value: int = _U64.unpack_from(self.data, addr - self.base)[0]
        return value


class UnwindMapping:
    """struct mapping_t: one executable mapping and its table's rows (count 0: none)."""

    __slots__ = ("bias", "count", "end", "pcs", "rows", "start")

    def __init__(self, start: int, end: int, bias: int, table: UnwindTable | None) -> None:
        self.start = start & MASK
        self.end = end & MASK
        self.bias = bias & MASK  # struct mapping_t holds it as a u64
        self.pcs: Sequence[int]
        if table is None or table.count == 0:  # table_len 0: frame-pointer steps
            self.count, self.pcs, self.rows = 0, (), b""
        else:
            self.count, self.pcs, self.rows = table.count, table.pcs, table.rows


class ProcessTables:
    """A process's executable mappings as (start, end, bias, table or None), as the recorder
    gives them to the kernel (address - bias = the object's ELF address; no table, or an
    empty one, means frame-pointer steps there)."""

    def __init__(self, mappings: Iterable[tuple[int, int, int, UnwindTable | None]]) -> None:
        # set_mappings: sorted by start (stable), the first MAX_MAPPINGS kept
        ms = sorted((UnwindMapping(*m) for m in mappings), key=lambda m: m.start)[:MAX_MAPPINGS]
        self._mappings = ms
        self._starts = [m.start for m in ms]

    def __len__(self) -> int:
        return len(self._mappings)

    def find_mapping(self, pc: int) -> UnwindMapping | None:
        """The last mapping with start <= pc, if pc < its end. The BPF search takes
        MAPPING_SEARCH_STEPS (9) steps, enough for 256 entries, and bisect_right is the
        same halving (mid = (lo + hi) / 2, `start <= pc` moves lo), so they agree always."""
        i = bisect.bisect_right(self._starts, pc)
        if i == 0:
            return None
        m = self._mappings[i - 1]
        return m if pc < m.end else None


def _find_row(m: UnwindMapping, addr: int) -> tuple[int, int, int, int, int] | None:
    """The last row with row.pc <= addr. bisect_right halves exactly as the BPF loop does
    (mid = lo + (hi - lo) / 2, `row.pc <= addr` moves lo), so it gives the same row even on
    a table that is not sorted; the BPF loop stops after ROW_SEARCH_STEPS steps, which only
    a table of 2**24 rows or more can need, so those are searched step for step."""
    if m.count < 1 << ROW_SEARCH_STEPS:
        i = bisect.bisect_right(m.pcs, addr)
    else:
        lo, hi, pcs = 0, m.count, m.pcs
        for _ in range(ROW_SEARCH_STEPS):
            if lo >= hi:
                break
            mid = lo + (hi - lo) // 2
            if pcs[mid] <= addr:
                lo = mid + 1
            else:
                hi = mid
        i = lo
    if i == 0:
        return None
    row: tuple[int, int, int, int, int] = ROW.unpack_from(m.rows, (i - 1) * ROW.size)
    return row


class _State:
    """struct state_t's unwinding part."""

    __slots__ = ("bp", "bp_known", "exact_pc", "pc", "sp", "unwinder")

    def __init__(self, regs: Regs) -> None:
        self.pc = regs.pc & MASK
        self.sp = regs.sp & MASK
        self.bp = regs.bp & MASK
        self.bp_known = True   # pt_regs has the interrupted rbp
        self.exact_pc = True   # the first pc is the interrupted instruction
        self.unwinder = 0


def _read(read_u64: ReadU64, addr: int) -> int | None:
    v = read_u64(addr & MASK)
    return None if v is None else v & MASK


def _fp_step(st: _State, read_u64: ReadU64) -> int:
    """Caller's frame from the frame pointer chain: [rbp] = caller's rbp, [rbp+8] = RA."""
    st.unwinder |= UNWINDER_FP  # attempted: counts the stacks that needed it
    if not st.bp_known or st.bp == 0:
        return STOP_FP_END
    if st.bp < st.sp:
        return STOP_BAD_FRAME
    next_bp = _read(read_u64, st.bp)
    ra = _read(read_u64, st.bp + 8) if next_bp is not None else None
    if next_bp is None or ra is None:
        return STOP_READ_FAULT
    st.sp = (st.bp + 16) & MASK
    st.bp = next_bp
    st.pc = ra
    st.exact_pc = False
    return STOP_NONE


def _signal_step(st: _State, read_u64: ReadU64) -> int:
    """The frame a signal interrupted, from the ucontext at rsp (uc_mcontext at 40;
    sigcontext_64 rbp at 80, rsp at 120, rip at 128)."""
    sp = st.sp
    pc = _read(read_u64, sp + 168)
    nsp = _read(read_u64, sp + 160) if pc is not None else None
    bp = _read(read_u64, sp + 120) if nsp is not None else None
    if pc is None or nsp is None or bp is None:
        return STOP_READ_FAULT
    st.pc = pc
    st.sp = nsp
    st.bp = bp
    st.bp_known = True
    st.exact_pc = True  # an interrupted instruction, not a return address
    st.unwinder |= UNWINDER_DWARF
    return STOP_NONE


def _dwarf_step(st: _State, row: tuple[int, int, int, int, int], read_u64: ReadU64) -> int:
    _pc, cfa_offset, rbp_offset, cfa_rule, rbp_rule = row
    st.unwinder |= UNWINDER_DWARF  # attempted, as in bpf/profile.c: a failed first step too
    if cfa_rule == CFA_RSP:
        cfa = (st.sp + cfa_offset) & MASK
    elif cfa_rule == CFA_RBP:
        if not st.bp_known:
            return STOP_UNSUPPORTED
        cfa = (st.bp + cfa_offset) & MASK
    elif cfa_rule == CFA_PLT:
        # binutils' lazy PLT: 8 more bytes once the entry pushed its relocation index; the
        # threshold is compared as (u64)rbp_offset
        cfa = (st.sp + cfa_offset + (8 if (st.pc & 15) >= (rbp_offset & MASK) else 0)) & MASK
    elif cfa_rule == CFA_SIGNAL:
        return _signal_step(st, read_u64)
    elif cfa_rule == CFA_END:
        return STOP_ENTRY
    elif cfa_rule == CFA_UNDEFINED:
        return _fp_step(st, read_u64)
    else:
        return STOP_UNSUPPORTED
    ra = _read(read_u64, cfa - 8)  # x86-64 psABI: the return address sits just below the CFA
    if ra is None:
        return STOP_READ_FAULT
    if rbp_rule == RBP_AT_CFA:
        bp = _read(read_u64, cfa + rbp_offset)
        if bp is None:
            return STOP_READ_FAULT
        st.bp = bp
        st.bp_known = True
    elif rbp_rule != RBP_SAME:
        st.bp_known = False
    if cfa <= st.sp and cfa_rule != CFA_PLT:
        return STOP_BAD_FRAME  # the caller's frame must lie above this one
    st.sp = cfa
    st.pc = ra
    st.exact_pc = False
    st.unwinder |= UNWINDER_DWARF
    return STOP_NONE


def _unwind_frame(st: _State, tables: ProcessTables | None, read_u64: ReadU64) -> int:
    m = tables.find_mapping(st.pc) if tables is not None else None
    if m is None or m.count == 0:
        return _fp_step(st, read_u64)
    # A return address points after the call; the call itself (pc - 1) is what the CFI of
    # the calling function covers (a call at a function's end would otherwise be looked up
    # in the next function).
    addr = (st.pc - m.bias - (0 if st.exact_pc else 1)) & MASK
    row = _find_row(m, addr)
    if row is None:
        return _fp_step(st, read_u64)
    return _dwarf_step(st, row, read_u64)


def unwind(regs: Regs, tables: ProcessTables | None, read_u64: ReadU64,
           max_depth: int = MAX_STACK_DEPTH) -> UnwindResult:
    """Walk the user stack from `regs` as bpf/profile.c does (tables None: a process with no
    mapping list in the kernel, frame-pointer steps only). `max_depth` above 127 is beyond
    what the BPF stack record holds; the walk still ends after MAX_FRAMES_WALKED frames,
    where the BPF tail calls run out."""
    st = _State(regs)
    frames: list[int] = []
    limit = min(max_depth, MAX_FRAMES_WALKED)
    while True:
        # unwind_frame: record the current pc as a frame, then move to the caller
        if len(frames) >= limit:
            stop = STOP_DEPTH
            break
        if st.pc == 0:
            stop = STOP_ZERO_PC
            break
        frames.append(st.pc)
        stop = _unwind_frame(st, tables, read_u64)
        if stop != STOP_NONE:
            break
    return UnwindResult(tuple(frames), UNWINDER_NAMES.get(st.unwinder), STOP_NAMES[stop])
