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
from typing import TypedDict

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


class _Reader:
    def __init__(self, mem: ProcessMemory, o: PyOffsets, types: TypeAddrs) -> None:
        self.mem, self.o, self.types = mem, o, types

    def read(self, addr: int, size: int, what: str) -> bytes:
        data = self.mem.read(addr, size)
        if data is None:
            raise _Unreadable(f"{what} unreadable at {addr:#x}")
        return data

    def pointer(self, addr: int, what: str) -> int:
        value: int = struct.unpack("<Q", self.read(addr, 8, what))[0]
        if not value or value >= USER_TOP:
            raise _Unreadable(f"{what} at {addr:#x} is not a pointer")
        return value

    def check_type(self, obj: int, expected: int | None, what: str) -> None:
        if expected is not None and self.pointer(obj + self.o.object_type, what) != expected:
            raise _Unreadable(f"{what} at {obj:#x} has the wrong type")

    def string(self, obj: int, cap: int, what: str) -> str:
        """A str object's text, from the compact layouts (every string the compiler makes is
        compact: PyUnicode_New puts the data right after the header)."""
        o = self.o
        self.check_type(obj, self.types.unicode, what)
        length = struct.unpack("<q", self.read(obj + o.unicode_length, 8, what))[0]
        state = struct.unpack("<I", self.read(obj + o.unicode_state, 4, what))[0]
        if not state >> o.unicode_compact_bit & 1:
            raise _Unreadable(f"{what} is not a compact string")
        if length < 0:
            raise _Unreadable(f"{what} has a negative length")
        if state >> o.unicode_ascii_bit & 1:
            kind, data = 1, obj + o.unicode_ascii_data
        else:
            kind, data = state >> o.unicode_kind_shift & 7, obj + o.unicode_compact_data
        if kind not in _PYTHON_KINDS:
            raise _Unreadable(f"{what} has an unknown kind {kind}")
        n = min(length, cap)
        text = self.read(data, n * kind, what).decode(_PYTHON_KINDS[kind], "replace") if n else ""
        return text + "..." if length > cap else text

    def bytes_object(self, obj: int, cap: int, what: str) -> bytes:
        o = self.o
        self.check_type(obj, self.types.bytes, what)
        size = struct.unpack("<q", self.read(obj + o.varobject_size, 8, what))[0]
        if size < 0:
            raise _Unreadable(f"{what} has a negative size")
        return self.read(obj + o.bytes_data, min(size, cap), what) if size else b""


def read_code_objects(pid: int, wanted: Iterable[tuple[int, int]], version: tuple[int, int],
                      types: TypeAddrs | None = None, time_ns: int | None = None) -> list[Row]:
    """One `pycode` row per (code_addr, checksum) of `wanted`, read from process `pid`.

    A code object that cannot be read (process gone, address stale, checksum different) still
    gets a row, with `reason` set and no name, so that the symbolizer can say why its frames
    are `[python code 0x...]`. The caller asks once per (pid, code_addr, checksum)."""
    offsets = OFFSETS[version]
    reader = _Reader(ProcessMemory(pid), offsets, types or TypeAddrs())
    version_text = f"{version[0]}.{version[1]}"
    rows: list[Row] = []
    for addr, checksum in wanted:
        row: Row = {"record": "pycode", "time_ns": time_ns, "pid": pid, "addr": addr,
                    "py_checksum": checksum, "py_version": version_text}
        try:
            # mypy's TypedDict.update takes only a Row, not a TypedDict of some of its columns
            row.update(_read_code(reader, addr, checksum))  # type: ignore[typeddict-item]
        except _Unreadable as exc:
            row["reason"] = str(exc)
        rows.append(row)
    return rows


class _CodeFields(TypedDict):
    """The columns of a `pycode` row read from the code object."""

    name: str
    path: str
    py_firstlineno: int
    py_linetable: bytes


def _read_code(r: _Reader, addr: int, checksum: int) -> _CodeFields:
    o = r.o
    r.check_type(addr, r.types.code, "code object")
    argcount, = struct.unpack("<i", r.read(addr + o.code_argcount, 4, "co_argcount"))
    firstlineno, = struct.unpack("<i", r.read(addr + o.code_firstlineno, 4, "co_firstlineno"))
    if code_checksum(firstlineno, argcount) != checksum:
        raise _Unreadable("checksum differs from the sampled one: the code object was freed "
                          "and its memory reused before it was read")
    name_field = o.code_qualname if o.code_qualname != ABSENT else o.code_name
    qualname = r.string(r.pointer(addr + name_field, "co_qualname"), MAX_NAME_CHARS,
                        "co_qualname")
    filename = r.string(r.pointer(addr + o.code_filename, "co_filename"), MAX_PATH_CHARS,
                        "co_filename")
    table = r.bytes_object(r.pointer(addr + o.code_linetable, "line table"), MAX_LINETABLE,
                           "line table")
    return {"name": qualname, "path": filename, "py_firstlineno": firstlineno,
            "py_linetable": table}
