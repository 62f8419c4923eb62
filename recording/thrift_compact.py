"""Thrift's compact protocol, decoded into plain values: what a Parquet footer and its page
headers are written in (parquet-format's parquet.thrift; the protocol is Apache Thrift's
doc/specs/thrift-compact-protocol.md).

Written by hand because the only Thrift decoder at hand is pyarrow's, whose import is what
recording/small_parquet.py exists to avoid. Generic: a struct is a dict of field id -> value,
so fields a newer writer adds are read and ignored. The input is untrusted: lengths are
checked against the buffer and nesting is bounded, and any inconsistency is a ThriftError.
"""

from __future__ import annotations

import struct
from typing import Any

# compact protocol type ids (doc/specs/thrift-compact-protocol.md, "Struct encoding")
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
# Parquet metadata nests four deep (FileMetaData > RowGroup > ColumnChunk > ColumnMetaData >
# Statistics); a crafted footer could nest until the interpreter's stack runs out.
MAX_DEPTH = 24


class ThriftError(ValueError):
    """The bytes are not a valid compact-protocol value."""


class Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def struct(self, depth: int = 0) -> dict[int, Any]:
        """One struct: field id -> value. Booleans are True/False, binaries bytes."""
        if depth > MAX_DEPTH:
            raise ThriftError("Thrift structs nested too deep")
        fields: dict[int, Any] = {}
        last = 0
        while True:
            head = self._byte()
            if head == 0:  # STOP
                return fields
            ttype, delta = head & 0x0F, head >> 4
            fid = last + delta if delta else _zigzag(self.varint())
            last = fid
            if ttype in (_TRUE, _FALSE):  # a struct field's bool is in its type id
                fields[fid] = ttype == _TRUE
            else:
                fields[fid] = self._value(ttype, depth + 1)

    def varint(self) -> int:
        result = shift = 0
        while True:
            b = self._byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ThriftError("Thrift varint longer than 64 bits")

    def _byte(self) -> int:
        if self.pos >= self.end:
            raise ThriftError("Thrift data ends mid-value")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise ThriftError("Thrift length runs past the end of the data")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def _value(self, ttype: int, depth: int) -> Any:
        if ttype in (_I16, _I32, _I64):
            return _zigzag(self.varint())
        if ttype == _BINARY:
            return self._take(self.varint())
        if ttype == _STRUCT:
            return self.struct(depth)
        if ttype in (_LIST, _SET):
            return self._list(depth)
        if ttype == _BYTE:
            b = self._byte()
            return b - 256 if b > 127 else b
        if ttype == _DOUBLE:
            return struct.unpack("<d", self._take(8))[0]
        if ttype == _MAP:
            return self._map(depth)
        if ttype in (_TRUE, _FALSE):  # an element of a list or map: one byte, 1 is true
            return self._byte() == 1
        raise ThriftError(f"unknown Thrift type {ttype}")

    def _list(self, depth: int) -> list[Any]:
        if depth > MAX_DEPTH:
            raise ThriftError("Thrift lists nested too deep")
        head = self._byte()
        size, etype = head >> 4, head & 0x0F
        if size == 15:
            size = self.varint()
        if size > self.end - self.pos:  # every element takes at least one byte
            raise ThriftError("Thrift list longer than its data")
        return [self._value(etype, depth + 1) for _ in range(size)]

    def _map(self, depth: int) -> dict[Any, Any]:
        size = self.varint()
        if not size:
            return {}
        if 2 * size > self.end - self.pos:
            raise ThriftError("Thrift map longer than its data")
        types = self._byte()
        kt, vt = types >> 4, types & 0x0F
        out: dict[Any, Any] = {}
        for _ in range(size):
            key = self._value(kt, depth + 1)
            out[key if not isinstance(key, (dict, list)) else repr(key)] = self._value(vt,
                                                                                       depth + 1)
        return out


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)
