"""Parquet recordings read without pyarrow: the start-up of symbolizing a small one.

Importing pyarrow costs 40-55 ms of CPU before a byte is read, more than `perf script` takes
for a whole small recording (issue 11 item 10). ebpf-record's Parquet files always have one
shape (recording/partial.py: pyarrow's writer, zstd, the flat schema of recording/columns.py
with three list columns), so this module decodes that subset of the format by hand, following
parquet-format's Encodings.md and parquet.thrift: the Thrift footer and page headers
(recording/thrift_compact.py), PLAIN and dictionary values, RLE/bit-packed hybrid levels,
data pages v1 and v2, flat columns and one level of lists (of values or of structs). A valid
file outside that subset (another codec or encoding) raises Unsupported, and the caller reads
it with pyarrow. Columns are decoded when first asked for, into what pyarrow's to_pylist gives.

Pure Python decodes at a few hundred nanoseconds a value, pyarrow at a few: for recordings
above SMALL_FILE_BYTES pyarrow's start-up pays for itself (docs/performance.md).

Everything read is untrusted: offsets and lengths are checked against the file, sizes are
bounded, and a file that makes no sense is a RecordingFormatError, as it is for pyarrow.
"""

from __future__ import annotations

import itertools
import os
import stat
import struct
from dataclasses import dataclass
from typing import Any

from recording.columns import COLUMN_TYPES, SCHEMA_VERSION_KEY, check_version
from recording.errors import RecordingFormatError
from recording.thrift_compact import Reader, ThriftError

MAGIC = b"PAR1"
# Files up to this size are read here, larger ones by pyarrow: this module decodes at ~0.25 s
# of CPU per MiB, pyarrow at ~0.1 s after an import of 0.05-0.1 s, so the two meet at
# ~0.4-0.6 MiB on this project's 2-core VM (docs/performance.md, "Symbolization").
SMALL_FILE_BYTES = 256 << 10
# a page's decompressed size, as its header claims it: bounds what a crafted file can make
# us allocate
MAX_PAGE_BYTES = 256 << 20
# Levels (values, nulls included) of one column chunk, and rows of one row group. RLE makes
# runs nearly free to store, so a crafted small file could claim billions; a real recording
# of SMALL_FILE_BYTES holds a few hundred thousand.
MAX_LEVELS = 1 << 23

# parquet.thrift enums
_INT32, _INT64, _BYTE_ARRAY = 1, 2, 6
_REQUIRED, _REPEATED = 0, 2
_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY = 0, 2, 3, 8
_ENCODINGS = frozenset((_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY))
_UNCOMPRESSED, _ZSTD = 0, 6
_DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 1, 2, 3
# ConvertedType (the pre-LogicalType annotations): UTF8 = 0, UINT_8..UINT_64 = 11..14
_UTF8, _UINT_8, _UINT_64 = 0, 11, 14
# LogicalType union members: STRING = 1, INTEGER = 10 (IntType: 1 bitWidth, 2 isSigned)
_LT_STRING, _LT_INTEGER = 1, 10

# bit-packed values of width 1 (LSB first: Encodings.md, "Bit-packed"), as text -> 0 and 1
_ZERO_ONE = bytes.maketrans(b"01", b"\x00\x01")
_NO_ELEMENT = object()  # a null struct in a list, apart from a struct with null fields


class Unsupported(Exception):
    """Valid Parquet this module does not decode: read the file with pyarrow instead."""


class _Corrupt(Exception):
    pass


@dataclass(frozen=True)
class _Leaf:
    """A leaf column of the Parquet schema, with its levels."""

    path: tuple[str, ...]
    kind: str  # its Arrow type as text: "int32", "uint64", "string", "binary", ...
    ptype: int
    max_def: int
    max_rep: int
    defs: tuple[int, ...]  # the definition level at which each element of path is present
    reps: tuple[bool, ...]  # whether each element of path is repeated


def open_small(path: str) -> list[RowGroupBatch] | None:
    """The row groups of a Parquet recording of at most SMALL_FILE_BYTES, as batches (a list:
    the file is read and its footer parsed once, however often it is gone through); None
    when the file is larger, not a regular file, not Parquet, or Parquet this module does not
    decode. Raises RecordingFormatError for a corrupt file or one that is no recording."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block
    except OSError:
        return None  # the pyarrow reader says why
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > SMALL_FILE_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(SMALL_FILE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not data.startswith(MAGIC) or len(data) > SMALL_FILE_BYTES:
        return None
    try:
        file = _File(data, path)
    except Unsupported:
        return None
    return file.batches()


class _File:
    def __init__(self, data: bytes, path: str) -> None:
        self.buf = memoryview(data)
        self.path = path
        try:
            self._parse()
        except (_Corrupt, ThriftError, UnicodeDecodeError, TypeError, AttributeError, KeyError,
                IndexError, ValueError, OverflowError) as exc:
            # a generic Thrift decoder gives any value any type: a crafted footer is caught
            # by the type it breaks
            raise RecordingFormatError(
                f"{path} is truncated or corrupt ({_why(exc)}); a killed recorder leaves "
                "`.FILE.XXXXXX.partial` next to FILE, which `ebpf-record --recover` turns "
                "into a recording") from None

    def _parse(self) -> None:
        meta = self._footer()
        self.leaves = _leaves(meta.get(2) or [])
        kv = {bytes(e.get(1, b"")): bytes(e.get(2) or b"") for e in meta.get(5) or []}
        self.fields = _fields(self.leaves)
        check_version(kv.get(SCHEMA_VERSION_KEY), "record" in self.fields,
                      self.path)
        for name, want in COLUMN_TYPES.items():
            got = self.fields.get(name)
            if got is None or got[0] != want:
                what = "missing" if got is None else f"of type {got[0]}"
                raise RecordingFormatError(
                    f"{self.path}: column {name!r} is {what}, not {want}: not a recording "
                    "ebpf-record wrote")
        self.groups = [self._group(i, g) for i, g in enumerate(meta.get(4) or [])]

    def _footer(self) -> dict[int, Any]:
        size = len(self.buf)
        if size < 12 or bytes(self.buf[-4:]) != MAGIC:
            raise _Corrupt("no Parquet footer")
        length = int.from_bytes(self.buf[-8:-4], "little")
        if length > size - 12:
            raise _Corrupt("footer longer than the file")
        return Reader(self.buf, size - 8 - length, size - 8).struct()

    def _group(self, index: int, group: Any) -> tuple[int, dict[tuple[str, ...], Any]]:
        """(rows, leaf path -> ColumnMetaData) of one row group; Unsupported for what this
        module does not decode, RecordingFormatError where the metadata is inconsistent."""
        try:
            rows = int(group[3])
            chunks = {}
            for chunk in group[1]:
                if chunk.get(1) is not None:  # file_path: the column lives in another file
                    raise Unsupported("a column chunk in another file")
                meta = chunk[3]
                chunks[tuple(bytes(p).decode() for p in meta[3])] = meta
                if meta[4] not in (_UNCOMPRESSED, _ZSTD) or not set(meta[2]) <= _ENCODINGS:
                    raise Unsupported(f"codec {meta[4]}, encodings {meta[2]}")
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError, ValueError,
                IndexError, OverflowError):
            raise RecordingFormatError(
                f"{self.path} is corrupt at row group {index}: inconsistent column metadata"
            ) from None
        if not 0 <= rows <= MAX_LEVELS or set(chunks) != {leaf.path for leaf in self.leaves}:
            raise RecordingFormatError(
                f"{self.path} is corrupt at row group {index}: its columns are not the schema's")
        return rows, chunks

    def batches(self) -> list[RowGroupBatch]:
        return [RowGroupBatch(self, i, rows, chunks)
                for i, (rows, chunks) in enumerate(self.groups)]


class RowGroupBatch:
    """One row group, read like a pyarrow RecordBatch: num_rows, column_names, and
    column(name).to_pylist(), a column decoded at its first use."""

    def __init__(self, file: _File, index: int, rows: int,
                 chunks: dict[tuple[str, ...], Any]) -> None:
        self._file = file
        self._index = index
        self._chunks = chunks
        self.num_rows = rows
        self.column_names = list(file.fields)

    def column(self, name: str) -> _Column:
        return _Column(self, name)

    def pylist(self, name: str) -> list[Any]:
        _type, leaves = self._file.fields[name]
        try:
            decoded = [_chunk(self._file.buf, leaf, self._chunks[leaf.path])
                       for leaf in leaves]
            return _assemble(leaves, decoded, self.num_rows)
        except (_Corrupt, ThriftError, UnicodeDecodeError, struct.error, IndexError,
                KeyError, TypeError, AttributeError, ValueError, OverflowError,
                StopIteration) as exc:
            raise RecordingFormatError(
                f"{self._file.path} is corrupt at row group {self._index}, column {name!r}: "
                f"{_why(exc)}") from None


class _Column:
    __slots__ = ("_batch", "_name")

    def __init__(self, batch: RowGroupBatch, name: str) -> None:
        self._batch, self._name = batch, name

    def to_pylist(self) -> list[Any]:
        return self._batch.pylist(self._name)


# --- schema -------------------------------------------------------------------------------

def _leaves(elements: list[Any]) -> list[_Leaf]:
    """The schema's leaf columns, depth first (the order of a row group's column chunks)."""
    if not elements or not isinstance(elements[0], dict):
        raise _Corrupt("no schema")
    out: list[_Leaf] = []
    pos = 1

    def walk(children: int, path: tuple[str, ...], defs: tuple[int, ...],
             reps: tuple[bool, ...], depth: int) -> None:
        nonlocal pos
        if depth > 4:
            raise Unsupported("nesting deeper than a list of structs")
        for _ in range(children):
            if pos >= len(elements):
                raise _Corrupt("schema ends early")
            el = elements[pos]
            pos += 1
            rep = el.get(3, _REQUIRED)
            level = (defs[-1] if defs else 0) + (rep != _REQUIRED)
            name = bytes(el[4]).decode()
            if el.get(5):
                walk(int(el[5]), (*path, name), (*defs, level), (*reps, rep == _REPEATED),
                     depth + 1)
            else:
                reps_here = (*reps, rep == _REPEATED)
                out.append(_Leaf((*path, name), _kind(el), el.get(1, -1), level,
                                 sum(reps_here), (*defs, level), reps_here))

    walk(int(elements[0].get(5, 0)), (), (), (), 0)
    return out


def _kind(el: dict[int, Any]) -> str:
    ptype, conv, logical = el.get(1), el.get(6), el.get(10) or {}
    integer = logical.get(_LT_INTEGER) if isinstance(logical, dict) else None
    unsigned = (isinstance(integer, dict) and integer.get(2) is False) or (
        conv is not None and _UINT_8 <= conv <= _UINT_64)
    if ptype == _INT32:
        return "uint32" if unsigned else "int32"
    if ptype == _INT64:
        return "uint64" if unsigned else "int64"
    if ptype == _BYTE_ARRAY:
        return "string" if conv == _UTF8 or _LT_STRING in logical else "binary"
    return f"parquet type {ptype}"


def _fields(leaves: list[_Leaf]) -> dict[str, tuple[str, list[_Leaf]]]:
    """Top-level column -> (its Arrow type as text, its leaves)."""
    grouped: dict[str, list[_Leaf]] = {}
    for leaf in leaves:
        grouped.setdefault(leaf.path[0], []).append(leaf)
    out = {}
    for name, group in grouped.items():
        first = group[0]
        if len(group) == 1 and len(first.path) == 1:
            arrow = first.kind
        elif all(leaf.reps[:3] == (False, True, False) and leaf.max_rep == 1 for leaf in group):
            if len(group) == 1 and len(first.path) == 3:
                arrow = f"list<item: {first.kind}>"
            elif all(len(leaf.path) == 4 for leaf in group):
                inner = ", ".join(f"{leaf.path[3]}: {leaf.kind}" for leaf in group)
                arrow = f"list<item: struct<{inner}>>"
            else:
                arrow = "a nested type"
        else:
            arrow = "a nested type"
        out[name] = (arrow, group)
    return out


# --- pages --------------------------------------------------------------------------------

def _chunk(buf: memoryview, leaf: _Leaf, meta: dict[int, Any]
           ) -> tuple[list[int], list[int], list[Any]]:
    """(definition levels, repetition levels, non-null values) of one column chunk; a level
    list is empty where its maximum is 0."""
    codec, num_values = meta[4], int(meta[5])
    start = int(meta[9])
    if meta.get(11):  # the dictionary page comes first
        start = min(start, int(meta[11]))
    end = start + int(meta[7])
    if not 4 <= start <= end <= len(buf) - 8 or not 0 <= num_values <= MAX_LEVELS:
        raise _Corrupt("column chunk outside the file, or of too many values")
    defs: list[int] = []
    reps: list[int] = []
    values: list[Any] = []
    dictionary: list[Any] | None = None
    seen = 0
    pos = start
    while seen < num_values:
        if pos >= end:
            raise _Corrupt("column chunk ends before its values")
        reader = Reader(buf, pos, end)
        header = reader.struct()
        kind, usize, csize = header[1], int(header[2]), int(header[3])
        pos = reader.pos
        if not 0 <= csize <= end - pos or not 0 <= usize <= MAX_PAGE_BYTES:
            raise _Corrupt("page size out of bounds")
        body = buf[pos:pos + csize]
        pos += csize
        if kind == _DICTIONARY_PAGE:
            data = _decompress(codec, body, usize)
            dictionary = _plain(data, 0, len(data), leaf, int(header[7][1]))
        elif kind == _DATA_PAGE:
            h = header[5]
            n = _page_values(int(h[1]), seen, num_values)
            data = _decompress(codec, body, usize)
            p = 0
            if leaf.max_rep:
                p = _levels_v1(data, p, leaf.max_rep, n, reps)
            if leaf.max_def:
                p = _levels_v1(data, p, leaf.max_def, n, defs)
            present = defs[len(defs) - n:].count(leaf.max_def) if leaf.max_def else n
            values += _values(data, p, len(data), int(h[2]), present, leaf, dictionary)
            seen += n
        elif kind == _DATA_PAGE_V2:
            h = header[8]
            n, dlen, rlen = _page_values(int(h[1]), seen, num_values), int(h[5]), int(h[6])
            if rlen < 0 or dlen < 0 or rlen + dlen > csize:
                raise _Corrupt("level lengths out of bounds")
            if leaf.max_rep:
                reps += _hybrid(body, 0, rlen, leaf.max_rep.bit_length(), n)
            if leaf.max_def:
                defs += _hybrid(body, rlen, rlen + dlen, leaf.max_def.bit_length(), n)
            rest = body[rlen + dlen:]
            data = _decompress(codec, rest, usize - rlen - dlen) if h.get(7, True) else rest
            # from the levels, not the header's num_nulls: writers differ on whether an
            # empty or null list counts as a null
            present = defs[len(defs) - n:].count(leaf.max_def) if leaf.max_def else n
            values += _values(data, 0, len(data), int(h[4]), present, leaf, dictionary)
            seen += n
        elif kind != _INDEX_PAGE:
            raise _Corrupt(f"unknown page type {kind}")
    return defs, reps, values


def _page_values(n: int, seen: int, total: int) -> int:
    if n < 0 or seen + n > total:
        raise _Corrupt("pages hold more values than their column chunk")
    return n


_zstd: Any = None


def _decompress(codec: int, body: memoryview, size: int) -> memoryview | bytes:
    if codec == _UNCOMPRESSED:
        out: memoryview | bytes = body
    else:
        global _zstd
        if _zstd is None:
            import zstandard  # here: only once a page is compressed

            _zstd = zstandard.ZstdDecompressor()
        try:
            out = _zstd.decompress(body, max_output_size=size)
        except Exception as exc:  # zstandard.ZstdError
            raise _Corrupt(f"zstd: {exc}") from None
    if len(out) != size:
        raise _Corrupt("page size differs from its header")
    return out


def _levels_v1(data: memoryview | bytes, p: int, max_level: int, n: int,
               into: list[int]) -> int:
    """A data page v1's levels: a 4-byte length, then the RLE/bit-packed hybrid."""
    if p + 4 > len(data):
        raise _Corrupt("levels past the page")
    length = int.from_bytes(data[p:p + 4], "little")
    end = p + 4 + length
    if end > len(data):
        raise _Corrupt("levels past the page")
    into += _hybrid(data, p + 4, end, max_level.bit_length(), n)
    return end


def _hybrid(data: memoryview | bytes, p: int, end: int, width: int, count: int) -> list[int]:
    """`count` values of the RLE/bit-packed hybrid (Encodings.md) in data[p:end]."""
    out: list[int] = []
    value_bytes = (width + 7) // 8
    mask = (1 << width) - 1
    shifts = range(0, 8 * width, width)
    while len(out) < count:
        header = 0
        shift = 0
        while True:  # ULEB128
            if p >= end or shift > 35:
                raise _Corrupt("levels or indices end early")
            b = data[p]
            p += 1
            header |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        n = header >> 1
        if not n:
            raise _Corrupt("an empty run")
        if header & 1:  # n groups of 8 bit-packed values
            size = n * width
            if p + size > end:
                raise _Corrupt("bit-packed run past its data")
            if width == 1:  # the bits as text, LSB first, then '0'/'1' -> 0/1 at C speed
                bits = format(int.from_bytes(data[p:p + size], "little"), "b")
                out += bits.zfill(8 * size)[::-1].encode().translate(_ZERO_ONE)
            elif width == 0:
                out += itertools.repeat(0, min(8 * n, count - len(out)))
            else:
                for g in range(p, p + size, width):
                    v = int.from_bytes(data[g:g + width], "little")
                    out += [(v >> s) & mask for s in shifts]
            p += size
        else:  # a run of n copies of one value
            if p + value_bytes > end:
                raise _Corrupt("RLE run past its data")
            v = int.from_bytes(data[p:p + value_bytes], "little")
            p += value_bytes
            out += itertools.repeat(v, min(n, count - len(out)))
    del out[count:]  # the last bit-packed group is padded to 8
    return out


def _values(data: memoryview | bytes, p: int, end: int, encoding: int, n: int, leaf: _Leaf,
            dictionary: list[Any] | None) -> list[Any]:
    if n < 0:
        raise _Corrupt("more nulls than values")
    if encoding == _PLAIN:
        return _plain(data, p, end, leaf, n)
    if encoding in (_RLE_DICTIONARY, _PLAIN_DICTIONARY):
        if not n:
            return []
        if dictionary is None or p >= end:
            raise _Corrupt("dictionary indices without a dictionary")
        width = data[p]
        if width > 32:
            raise _Corrupt("dictionary index wider than 32 bits")
        return list(map(dictionary.__getitem__, _hybrid(data, p + 1, end, width, n)))
    raise _Corrupt(f"values in encoding {encoding}")


def _plain(data: memoryview | bytes, p: int, end: int, leaf: _Leaf, n: int) -> list[Any]:
    """n PLAIN values of the leaf's type, as Python values of its Arrow type."""
    if leaf.ptype in (_INT32, _INT64):
        width = 4 if leaf.ptype == _INT32 else 8
        if n < 0 or p + width * n > end:
            raise _Corrupt("values past the page")
        code = {"int32": "i", "uint32": "I", "int64": "q", "uint64": "Q"}[leaf.kind]
        return list(struct.unpack_from(f"<{n}{code}", data, p))
    if leaf.ptype != _BYTE_ARRAY:
        raise _Corrupt(f"values of {leaf.kind}")
    if n < 0 or 4 * n > end - p:
        raise _Corrupt("values past the page")
    text = leaf.kind == "string"
    out: list[Any] = []
    for _ in range(n):
        length = int.from_bytes(data[p:p + 4], "little")
        p += 4
        if p + length > end:
            raise _Corrupt("a string past the page")
        raw = bytes(data[p:p + length])
        out.append(raw.decode("utf-8") if text else raw)
        p += length
    return out


# --- records ------------------------------------------------------------------------------

def _assemble(leaves: list[_Leaf], decoded: list[tuple[list[int], list[int], list[Any]]],
              rows: int) -> list[Any]:
    """A top-level column's cells from its leaves' levels and values (Dremel's record
    assembly, for flat columns and one level of lists)."""
    if len(leaves) == 1 and not leaves[0].max_rep:
        defs, _reps, values = decoded[0]
        leaf = leaves[0]
        if not leaf.max_def or len(values) == len(defs):
            out = values
        else:
            it = iter(values)
            top = leaf.max_def
            out = [next(it) if d == top else None for d in defs]
        if len(out) != rows:
            raise _Corrupt("a column of another length than its row group")
        return out
    lists = [_lists(leaf, *d, struct_field=len(leaf.path) == 4)
             for leaf, d in zip(leaves, decoded, strict=True)]
    if any(len(cells) != rows for cells in lists):
        raise _Corrupt("a column of another length than its row group")
    if len(leaves) == 1 and len(leaves[0].path) == 3:
        return lists[0]
    names = [leaf.path[3] for leaf in leaves]
    out = []
    for cells in zip(*lists, strict=True):
        if cells[0] is None:
            out.append(None)
            continue
        if any(c is None or len(c) != len(cells[0]) for c in cells):
            raise _Corrupt("struct fields of different lengths")
        out.append([None if parts[0] is _NO_ELEMENT else dict(zip(names, parts, strict=True))
                    for parts in zip(*cells, strict=True)])
    return out


def _lists(leaf: _Leaf, defs: list[int], reps: list[int], values: list[Any],
           struct_field: bool) -> list[Any]:
    """Per row: None (a null list), or the list of this leaf's cells (a struct field's cells
    are _NO_ELEMENT where the struct itself is null). A row is a run of levels from one with
    repetition level 0 to the next."""
    if len(reps) != len(defs):
        raise _Corrupt("repetition and definition levels differ in number")
    if reps and reps[0] != 0:
        raise _Corrupt("a repeated value of no list")
    d_list, d_rep, d_elem, top = leaf.defs[0], leaf.defs[1], leaf.defs[2], leaf.max_def
    null_element = _NO_ELEMENT if struct_field else None
    starts = [i for i, r in enumerate(reps) if r == 0]
    starts.append(len(reps))
    rows: list[Any] = []
    v = 0
    for k in range(len(starts) - 1):
        s, e = starts[k], starts[k + 1]
        d0 = defs[s]
        if d0 < d_rep:  # a null list, or an empty one: one level, no values
            if e - s != 1:
                raise _Corrupt("a repeated value of a null list")
            rows.append(None if d0 < d_list else [])
        elif defs[s:e].count(top) == e - s:  # every element present: the common case
            rows.append(values[v:v + e - s])
            v += e - s
        else:
            cells: list[Any] = []
            for d in defs[s:e]:
                if d < d_elem:
                    cells.append(null_element)
                elif d == top:
                    cells.append(values[v])
                    v += 1
                else:
                    cells.append(None)
            rows.append(cells)
    if v != len(values):
        raise _Corrupt("levels and values differ in number")
    return rows


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    if isinstance(exc, UnicodeDecodeError):
        return "a string is not UTF-8"
    if isinstance(exc, StopIteration | IndexError | KeyError | TypeError):
        return f"inconsistent data ({type(exc).__name__})"
    return text or type(exc).__name__
