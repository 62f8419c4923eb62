"""Code objects of a live CPython process, read with process_vm_readv into `pycode` rows.

BPF records only a code object's address and checksum per Python frame (recording/pyframes.py);
the names live in the process and die with it, so after each drain the recorder reads the new
code objects: co_qualname (3.11+; co_name before), co_filename, co_firstlineno and the line
table (co_lnotab 3.8-3.9, co_linetable 3.10+). The symbolizer computes line numbers from the
table offline (symbolizer/python.py).

Everything read is untrusted: the address may be stale (the code object freed and its memory
reused), the process may exit mid-read. So: the object's type must be PyCode_Type and its
checksum the one BPF computed, strings must be PyUnicode_Type objects in a compact layout,
lengths are capped, and every failure becomes a row with a `reason` instead of an exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from recorder.python.layout import ABSENT, PyOffsets
from recorder.python.memory import USER_TOP, ProcessMemory
from recorder.python.offsets import OFFSETS
from recording.pyframes import code_checksum
from recording.schema import Row

MAX_NAME_CHARS = 1024  # qualnames; longer ones are cut and end in "..."
MAX_PATH_CHARS = 4096  # PATH_MAX
MAX_LINETABLE = 1 << 20  # bytes; a table cut short only loses the lines after the cut
_PYTHON_KINDS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}  # PyUnicode_{1,2,4}BYTE_KIND


@dataclass(frozen=True)
class TypeAddrs:
    """Absolute addresses of the type objects, to check what a pointer points to (None: not
    known, the check is skipped)."""

    code: int | None = None
    unicode: int | None = None
    bytes: int | None = None


class _Unreadable(Exception):
    """One field could not be read or is not what it should be (never leaves this module)."""


# Strings and line tables are read with this much beyond their header in the same read: most
# names, paths and tables fit (a fifth of the tables of Debian's 3.11 stdlib functions are
# over 256 bytes, few over 1 KiB), so one system call gets an object and its data. A read
# that runs into an unmapped page fails as a whole, and the exact reads follow.
_SPECULATIVE = 256
_SPECULATIVE_TABLE = 1024


class _Reader:
    def __init__(self, mem: ProcessMemory, o: PyOffsets, types: TypeAddrs) -> None:
        self.mem, self.o, self.types = mem, o, types
        name_field = o.code_qualname if o.code_qualname != ABSENT else o.code_name
        self.name_field = name_field
        # the code object's fields this module reads, from its start: one read
        self.code_span = max(o.object_type, o.code_argcount, o.code_firstlineno, name_field,
                             o.code_filename, o.code_linetable) + 8
        self.unicode_head = max(o.object_type + 8, o.unicode_length + 8, o.unicode_state + 4,
                                o.unicode_ascii_data, o.unicode_compact_data)
        self.bytes_head = max(o.object_type + 8, o.varobject_size + 8, o.bytes_data)

    def read(self, addr: int, size: int, what: str) -> bytes:
        data = self.mem.read(addr, size)
        if data is None:
            raise _Unreadable(f"{what} unreadable at {addr:#x}")
        return data

    def pointer(self, block: bytes, base: int, offset: int, what: str) -> int:
        """The pointer at `offset` of `block`, the bytes read at `base`."""
        value: int = struct.unpack_from("<Q", block, offset)[0]
        if not value or value >= USER_TOP:
            raise _Unreadable(f"{what} at {base + offset:#x} is not a pointer")
        return value

    def check_type(self, block: bytes, obj: int, expected: int | None, what: str) -> None:
        if expected is not None and self.pointer(block, obj, self.o.object_type,
                                                 what) != expected:
            raise _Unreadable(f"{what} at {obj:#x} has the wrong type")

    def _data(self, block: bytes, obj: int, offset: int, size: int, what: str) -> bytes:
        """`size` bytes at obj + offset: from `block` (read at obj) if it holds them."""
        if offset + size <= len(block):
            return block[offset:offset + size]
        return self.read(obj + offset, size, what)

    def string(self, obj: int, cap: int, what: str, block: bytes | None = None) -> str:
        """A str object's text, from the compact layouts (every string the compiler makes is
        compact: PyUnicode_New puts the data right after the header). `block`: bytes already
        read at `obj`, at least its header (None: read it here)."""
        o = self.o
        if block is None or len(block) < self.unicode_head:
            block = self.read(obj, self.unicode_head, what)
        self.check_type(block, obj, self.types.unicode, what)
        length = struct.unpack_from("<q", block, o.unicode_length)[0]
        state = struct.unpack_from("<I", block, o.unicode_state)[0]
        if not state >> o.unicode_compact_bit & 1:
            raise _Unreadable(f"{what} is not a compact string")
        if length < 0:
            raise _Unreadable(f"{what} has a negative length")
        if state >> o.unicode_ascii_bit & 1:
            kind, data = 1, o.unicode_ascii_data
        else:
            kind, data = state >> o.unicode_kind_shift & 7, o.unicode_compact_data
        if kind not in _PYTHON_KINDS:
            raise _Unreadable(f"{what} has an unknown kind {kind}")
        n = min(length, cap)
        text = (self._data(block, obj, data, n * kind, what).decode(_PYTHON_KINDS[kind],
                                                                    "replace") if n else "")
        return text + "..." if length > cap else text

    def bytes_object(self, obj: int, cap: int, what: str, block: bytes | None = None) -> bytes:
        o = self.o
        if block is None or len(block) < self.bytes_head:
            block = self.read(obj, self.bytes_head, what)
        self.check_type(block, obj, self.types.bytes, what)
        size = struct.unpack_from("<q", block, o.varobject_size)[0]
        if size < 0:
            raise _Unreadable(f"{what} has a negative size")
        return self._data(block, obj, o.bytes_data, min(size, cap), what) if size else b""


@dataclass(frozen=True)
class _Code:
    """What a code object's own bytes say; the strings and the table are read next."""

    firstlineno: int
    name: int  # addresses of co_qualname (co_name), co_filename, the line table
    filename: int
    table: int


def read_code_objects(pid: int, wanted: Iterable[tuple[int, int]], version: tuple[int, int],
                      types: TypeAddrs | None = None, time_ns: int | None = None) -> list[Row]:
    """One `pycode` row per (code_addr, checksum) of `wanted`, read from process `pid`.

    A code object that cannot be read (process gone, address stale, checksum different) still
    gets a row, with `reason` set and no name, so that the symbolizer can say why its frames
    are `[python code 0x...]`. The caller asks once per (pid, code_addr, checksum).

    Two system calls read a batch in the common case (process_vm_readv takes many ranges):
    every code object's fields, then every name, path and line table with its data. It was
    17 reads per code object, ~150 us each on this VM, which a host starting ten Python
    processes a second paid hundreds of times a second."""
    offsets = OFFSETS[version]
    r = _Reader(ProcessMemory(pid), offsets, types or TypeAddrs())
    version_text = f"{version[0]}.{version[1]}"
    keys = list(wanted)
    codes: list[_Code | str] = []
    for (addr, checksum), block in zip(keys, r.mem.read_many([(a, r.code_span) for a, _ in keys]),
                                       strict=True):
        try:
            codes.append(_code(r, addr, checksum, block))
        except _Unreadable as exc:
            codes.append(str(exc))
    spans = [span for c in codes if isinstance(c, _Code)
             for span in ((c.name, r.unicode_head + _SPECULATIVE),
                          (c.filename, r.unicode_head + _SPECULATIVE),
                          (c.table, r.bytes_head + _SPECULATIVE_TABLE))]
    blocks = iter(r.mem.read_many(spans))
    rows: list[Row] = []
    for (addr, checksum), c in zip(keys, codes, strict=True):
        row: Row = {"record": "pycode", "time_ns": time_ns, "pid": pid, "addr": addr,
                    "py_checksum": checksum, "py_version": version_text}
        if isinstance(c, str):
            row["reason"] = c
        else:
            name, path, table = next(blocks), next(blocks), next(blocks)
            try:
                row["name"] = r.string(c.name, MAX_NAME_CHARS, "co_qualname", name)
                row["path"] = r.string(c.filename, MAX_PATH_CHARS, "co_filename", path)
                row["py_linetable"] = r.bytes_object(c.table, MAX_LINETABLE, "line table",
                                                     table)
                row["py_firstlineno"] = c.firstlineno
            except _Unreadable as exc:
                for column in ("name", "path", "py_linetable"):
                    row.pop(column, None)  # type: ignore[misc]
                row["reason"] = str(exc)
        rows.append(row)
    return rows


def _code(r: _Reader, addr: int, checksum: int, block: bytes | None) -> _Code:
    o = r.o
    if block is None:
        raise _Unreadable(f"code object unreadable at {addr:#x}")
    r.check_type(block, addr, r.types.code, "code object")
    argcount, = struct.unpack_from("<i", block, o.code_argcount)
    firstlineno, = struct.unpack_from("<i", block, o.code_firstlineno)
    if code_checksum(firstlineno, argcount) != checksum:
        raise _Unreadable("checksum differs from the sampled one: the code object was freed "
                          "and its memory reused before it was read")
    return _Code(firstlineno, r.pointer(block, addr, r.name_field, "co_qualname"),
                 r.pointer(block, addr, o.code_filename, "co_filename"),
                 r.pointer(block, addr, o.code_linetable, "line table"))
