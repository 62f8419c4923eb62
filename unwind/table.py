"""The compact unwind table: sorted 16-byte rows, one table per ELF object.

The row layout and the rule numbers are the contract with the BPF unwinder (issue 10's
unwind table spec, repeated here so this file is the reference):

    u64 pc          ELF virtual address (the object's p_vaddr/st_value space, as readelf
                    prints it) where the row starts to apply, until the next row's pc
    s32 cfa_offset
    s16 rbp_offset  for CFA_PLT rows: the PLT threshold T
    u8  cfa_rule
    u8  rbp_rule

Rows are strictly increasing by pc; consecutive rows with the same rule fields are merged.
Rows whose cfa_rule stops or replaces the generic step (CFA_UNDEFINED, CFA_SIGNAL, CFA_END,
CFA_UNSUPPORTED) carry zero operands, so equal neighbours merge and a table is deterministic.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

ROW = struct.Struct("<QihBB")

CFA_UNDEFINED = 0    # no CFI covers pc: the unwinder falls back to frame pointers
CFA_RSP = 1          # CFA = rsp + cfa_offset
CFA_RBP = 2          # CFA = rbp + cfa_offset
CFA_PLT = 3          # CFA = rsp + cfa_offset + (((rip & 15) >= rbp_offset) ? 8 : 0)
CFA_SIGNAL = 4       # rt_sigreturn trampoline: registers from the ucontext at rsp
CFA_END = 5          # return address undefined: outermost frame (_start, thread start)
CFA_UNSUPPORTED = 6  # any other CFA or return-address rule: the unwinder stops with a reason

RBP_SAME = 0       # rbp unchanged in this frame
RBP_AT_CFA = 1     # caller's rbp = *(CFA + rbp_offset)
RBP_UNDEFINED = 2  # any other rule: the caller's rbp is unknown

CFA_NAMES = ("undefined", "rsp", "rbp", "plt", "signal", "end", "unsupported")
RBP_NAMES = ("same", "at_cfa", "undefined")

# File format: header, the build ID's bytes, then the rows exactly as the BPF map holds them.
# BUILDER_VERSION names the decoder's behaviour: a cached table written by an older builder
# (one with a since-fixed bug) is ignored and rebuilt rather than trusted forever.
MAGIC = b"EBPFUNW\0"
FORMAT_VERSION = 1
BUILDER_VERSION = 2  # 2: a CFA_END row at an entry point no FDE covers (unwind/build.py)
HEADER = struct.Struct("<8sHHIQ")  # magic, format version, build ID bytes, builder, row count
MAX_BUILD_ID_BYTES = 64


class TableFormatError(ValueError):
    """Bytes that are not a table of this format and builder version."""


@dataclass(frozen=True)
class Row:
    pc: int
    cfa_offset: int
    rbp_offset: int
    cfa_rule: int
    rbp_rule: int

    def __str__(self) -> str:
        return (f"{self.pc:#x} cfa={CFA_NAMES[self.cfa_rule]}{self.cfa_offset:+d} "
                f"rbp={RBP_NAMES[self.rbp_rule]}{self.rbp_offset:+d}")


class UnwindTable:
    """Packed rows of one object; `lookup` answers what the BPF binary search answers."""

    def __init__(self, build_id: str | None, rows: bytes) -> None:
        if len(rows) % ROW.size:
            raise TableFormatError(f"row bytes ({len(rows)}) not a multiple of {ROW.size}")
        self.build_id = build_id
        self.rows = bytes(rows)
        self.count = len(rows) // ROW.size
        self._pcs: memoryview | None = None

    @classmethod
    def from_tuples(cls, build_id: str | None,
                    rows: list[tuple[int, int, int, int, int]]) -> UnwindTable:
        """Rows as (pc, cfa_offset, rbp_offset, cfa_rule, rbp_rule), already sorted."""
        buf = bytearray(ROW.size * len(rows))
        pack = ROW.pack_into
        for i, r in enumerate(rows):
            pack(buf, i * ROW.size, *r)
        return cls(build_id, bytes(buf))

    @property
    def pcs(self) -> Sequence[int]:
        """Every row's pc, in order: a view of the rows (each row starts with its u64 pc), so
        a lookup costs no list of a million ints (libxul's table) to build first."""
        if self._pcs is None:
            self._pcs = memoryview(self.rows).cast("Q")[::ROW.size // 8]
        return self._pcs

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Row]:
        for r in ROW.iter_unpack(self.rows):
            yield Row(*r)

    def __getitem__(self, i: int) -> Row:
        if not -self.count <= i < self.count:
            raise IndexError(i)
        return Row(*ROW.unpack_from(self.rows, (i % self.count) * ROW.size))

    def lookup(self, pc: int) -> Row | None:
        """The row that applies at pc (the last row with row.pc <= pc); None before the first."""
        i = bisect.bisect_right(self.pcs, pc) - 1
        return self[i] if i >= 0 else None

    def rule_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CFA_NAMES, 0)
        for r in ROW.iter_unpack(self.rows):
            counts[CFA_NAMES[r[3]]] += 1
        return counts

    def to_bytes(self) -> bytes:
        bid = bytes.fromhex(self.build_id) if self.build_id else b""
        if len(bid) > MAX_BUILD_ID_BYTES:
            raise TableFormatError(f"build ID of {len(bid)} bytes")
        return HEADER.pack(MAGIC, FORMAT_VERSION, len(bid), BUILDER_VERSION, self.count) + bid + \
            self.rows

    @classmethod
    def from_bytes(cls, data: bytes) -> UnwindTable:
        """Parse and validate a serialized table (a cache file: damaged files must not load)."""
        if len(data) < HEADER.size:
            raise TableFormatError("shorter than the header")
        magic, version, bid_len, builder, count = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise TableFormatError("not an unwind table (bad magic)")
        if version != FORMAT_VERSION or builder != BUILDER_VERSION:
            raise TableFormatError(f"format {version}/builder {builder}, want "
                                   f"{FORMAT_VERSION}/{BUILDER_VERSION}")
        if bid_len > MAX_BUILD_ID_BYTES:
            raise TableFormatError(f"build ID of {bid_len} bytes")
        start = HEADER.size + bid_len
        if len(data) != start + count * ROW.size:
            raise TableFormatError(f"{len(data)} bytes for {count} rows")
        table = cls(data[HEADER.size:start].hex() or None, data[start:])
        table.validate()
        return table

    def validate(self) -> None:
        """Rows strictly increasing and rules in range: what the BPF binary search assumes.
        (Comparisons run in C over the pcs and over the rule bytes, 14 and 15 of each row:
        a cache load validates a million rows in milliseconds. The pcs are read through a view,
        not a list: libLLVM's million would be 40 MiB of Python ints for a moment.)"""
        pcs = self.pcs
        if not all(map(operator.lt, pcs, itertools.islice(pcs, 1, None))):
            i = next(i for i in range(1, len(pcs)) if pcs[i] <= pcs[i - 1])
            raise TableFormatError(f"row at {pcs[i]:#x} not after {pcs[i - 1]:#x}")
        for at, limit in ((14, CFA_UNSUPPORTED), (15, RBP_UNDEFINED)):
            rules = self.rows[at::ROW.size]
            if rules and max(rules) > limit:
                i = next(i for i, r in enumerate(rules) if r > limit)
                raise TableFormatError(f"row at {pcs[i]:#x}: rule {self.rows[i * ROW.size + 14]}/"
                                       f"{self.rows[i * ROW.size + 15]} out of range")
