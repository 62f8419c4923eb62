"""A compact, sorted symbol table: three arrays and a blob of names.

Lookups bisect the sorted start addresses, so resolving the unique addresses of a recording is
O(log n) each with no per-address scans or subprocesses. The same layout is the on-disk cache
format (see to_bytes), so a warm run loads a table with a few `array.frombytes` calls instead
of parsing ELF again.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import struct
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

# v2: PLT stubs, code labels, perf's choice among aliases, zero sizes bounded by the section:
# tables cached by v1 are parsed again rather than served without them
MAGIC = b"EPSYMv2\0"
_HEADER = struct.Struct("<8sQQ")  # magic, symbol count, names blob size


class CacheFormatError(ValueError):
    """A cache file that is not a symbol table of this version (it is rebuilt)."""


@dataclass(frozen=True)
class SymbolEntry:
    """One function symbol: start, size, name."""

    addr: int
    size: int
    name: bytes
    rank: int = 0  # higher wins among symbols at the same address (e.g. GLOBAL FUNC over LOCAL)


class SymbolTable:
    def __init__(self, addrs: array[int], sizes: array[int], name_offs: array[int], blob: bytes
                 ) -> None:
        self.addrs = addrs
        self.sizes = sizes
        self.name_offs = name_offs  # len(addrs) + 1 offsets; name i is blob[offs[i]:offs[i+1]]
        self.blob = blob

    @classmethod
    def empty(cls) -> SymbolTable:
        return cls(array("Q"), array("Q"), array("Q", [0]), b"")

    @classmethod
    def build(cls, entries: Iterable[SymbolEntry]) -> SymbolTable:
        best: dict[int, SymbolEntry] = {}
        for e in entries:
            if not e.name:
                continue
            cur = best.get(e.addr)
            # Aliases share an address (memcpy/__memcpy_avx...): keep the highest-ranked, then
            # the one with a size, then the shortest name, so the choice is stable across runs.
            if cur is None or (e.rank, e.size > 0, -len(e.name), e.name) > (
                cur.rank, cur.size > 0, -len(cur.name), cur.name
            ):
                best[e.addr] = e
        addrs, sizes, offs = array("Q"), array("Q"), array("Q", [0])
        names = bytearray()
        for addr in sorted(best):
            e = best[addr]
            addrs.append(addr)
            sizes.append(e.size)
            names += e.name
            offs.append(len(names))
        return cls(addrs, sizes, offs, bytes(names))

    def bounded(self, ranges: list[tuple[int, int]]) -> SymbolTable:
        """This table with each zero-sized symbol given the size up to the next symbol or
        the end of the section range holding it, whichever comes first; one that no range
        holds, or that ends where it starts, is dropped (it would cover nothing or, at
        lookup, everything up to the next symbol). `ranges`: sorted [start, end) of the
        object's loaded sections."""
        if 0 not in self.sizes:
            return self
        starts = [r[0] for r in ranges]
        sizes = array("Q", self.sizes)
        n = len(self.addrs)
        drop = set()
        for i in (i for i, size in enumerate(self.sizes) if not size):
            addr = self.addrs[i]
            j = bisect.bisect_right(starts, addr) - 1
            limit = ranges[j][1] if j >= 0 and addr < ranges[j][1] else addr
            if i + 1 < n:
                limit = min(limit, self.addrs[i + 1])
            if limit > addr:
                sizes[i] = limit - addr
            else:
                drop.add(i)
        return self._select([i for i in range(n) if i not in drop], sizes)

    def _select(self, keep: list[int], sizes: array[int]) -> SymbolTable:
        """A table of the given rows of this one, with these sizes."""
        out = _Builder()
        for i in keep:
            out.add(self.addrs[i], sizes[i], self.name_at(i))
        return out.table()

    def __len__(self) -> int:
        return len(self.addrs)

    def merged(self, other: SymbolTable) -> SymbolTable:
        """Union of two tables (.dynsym plus MiniDebugInfo's .symtab, as gdb does; a symbol
        table plus the PLT stubs), merged in address order in one pass; at an address both
        hold, this table's symbol stays."""
        if not len(other):
            return self
        out = _Builder()
        i = j = 0
        n, m = len(self.addrs), len(other.addrs)
        while i < n or j < m:
            if j >= m or (i < n and self.addrs[i] <= other.addrs[j]):
                if j < m and other.addrs[j] == self.addrs[i]:
                    j += 1  # the same address in both: this table's symbol
                out.add(self.addrs[i], self.sizes[i], self.name_at(i))
                i += 1
            else:
                out.add(other.addrs[j], other.sizes[j], other.name_at(j))
                j += 1
        return out.table()

    def entries(self) -> Iterable[SymbolEntry]:
        for i in range(len(self.addrs)):
            yield SymbolEntry(self.addrs[i], self.sizes[i], self.name_at(i))

    def name_at(self, i: int) -> bytes:
        return self.blob[self.name_offs[i]:self.name_offs[i + 1]]

    def lookup(self, addr: int) -> tuple[str, int] | None:
        """(name, symbol start) of the symbol containing addr, or None."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return None
        start, size = self.addrs[i], self.sizes[i]
        # bisect gives addrs[i] <= addr < addrs[i + 1]. A sized symbol covers [start, start +
        # size); a zero-sized one (hand-written assembly) extends to the next symbol, as perf
        # does, but not past the last one.
        if (size and addr >= start + size) or (not size and i + 1 >= len(self.addrs)):
            return None
        return self.name_at(i).decode("utf-8", "replace"), start

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                _HEADER.pack(MAGIC, len(self.addrs), len(self.blob)),
                _le(self.addrs),
                _le(self.sizes),
                _le(self.name_offs),
                self.blob,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SymbolTable:
        if len(data) < _HEADER.size:
            raise CacheFormatError("short header")
        magic, n, blob_len = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise CacheFormatError("bad magic")
        need = _HEADER.size + 8 * (3 * n + 1) + blob_len
        if len(data) != need:
            raise CacheFormatError("size does not match header")
        pos = _HEADER.size
        arrays = []
        for count in (n, n, n + 1):
            a = array("Q")
            a.frombytes(data[pos:pos + 8 * count])
            if _BIG_ENDIAN:
                a.byteswap()
            arrays.append(a)
            pos += 8 * count
        blob = data[pos:pos + blob_len]
        offs = arrays[2]
        # in order, checked at C speed (a warm run loads tables of 100,000 symbols)
        if offs[0] != 0 or offs[-1] != blob_len or not all(
                map(operator.le, offs, itertools.islice(offs, 1, None))):
            raise CacheFormatError("name offsets out of order")
        return cls(arrays[0], arrays[1], offs, blob)


class _Builder:
    """Rows appended in address order, then one SymbolTable."""

    def __init__(self) -> None:
        self.addrs, self.sizes, self.offs = array("Q"), array("Q"), array("Q", [0])
        self.names = bytearray()

    def add(self, addr: int, size: int, name: bytes) -> None:
        self.addrs.append(addr)
        self.sizes.append(size)
        self.names += name
        self.offs.append(len(self.names))

    def table(self) -> SymbolTable:
        return SymbolTable(self.addrs, self.sizes, self.offs, bytes(self.names))


_BIG_ENDIAN = array("H", [1]).tobytes() != b"\x01\x00"


def _le(a: array[int]) -> bytes:
    if _BIG_ENDIAN:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()
