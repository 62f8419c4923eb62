"""Python frames: (code object, instruction) pairs of a user stack, named from `pycode` rows.

The recorder stores, per (pid, code object, checksum), the code object's qualname, filename,
first line and line table (recording/schema.py, docs/recording-format.md); BPF stores per
frame the code object's address and the instruction index (recording/pyframes.py). The line
is computed here, offline, the way the interpreter's own PyCode_Addr2Line does it for
`frame.f_lineno`, from one of three table formats:
- 3.8-3.9 `co_lnotab`: (bytecode offset delta, signed line delta) byte pairs;
- 3.10 `co_linetable`: (bytecode offset delta, signed line delta) pairs too, but each pair is
  a range of its own, and a line delta of -128 means "no line" (Objects/lnotab_notes.txt);
- 3.11+ location table: variable-length entries of (code units, line delta, columns)
  (Objects/locations.md).

Frames are named as Pyroscope's eBPF Python profiler (pyperf) names them:
`<file basename> <qualname>`, e.g. `app.py Handler.get` (grafana/pyroscope
ebpf/session_python.go: `fmt.Sprintf("%s %s.%s", filename, classname, name)`), with the
full path in `file` and the line in `line`, which pprof keeps. Before 3.11 code objects have
no co_qualname: frames show co_name, without the class.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass

from profiles.model import Frame, FrameKind
from recording.pyframes import (
    NO_INSTRUCTION,
    decode_pair,
)
from symbolizer.report import Unresolved

Frames = tuple[Frame, ...]
Resolved = tuple[Frames, Unresolved | None]
MAX_LINETABLE = 1 << 20
PYTHON_OBJECT = "[python]"  # the pseudo-object of unresolved Python frames in the report


# --- line tables ---------------------------------------------------------------------------
# Each decoder gives the table as ranges: sorted starts (in bytes of bytecode, as
# PyCode_Addr2Line counts), the end of the last range, and each range's line (None: none).
Ranges = tuple[list[int], int, list[int | None]]


def _lnotab_ranges(table: bytes, firstlineno: int) -> Ranges:
    """3.8-3.9 (Objects/lnotab_notes.txt): the line changes by the signed second byte of a
    pair at the offset its first byte advances to; PyCode_Addr2Line stops at the first pair
    whose offset passes the instruction."""
    starts, lines = [0], [firstlineno]
    addr, line = 0, firstlineno
    for i in range(0, len(table) - 1, 2):
        addr += table[i]
        delta = table[i + 1]
        line += delta - 256 if delta > 127 else delta
        if addr == starts[-1]:
            lines[-1] = line  # a zero offset step: several pairs for one big line jump
        else:
            starts.append(addr)
            lines.append(line)
    return starts, 1 << 62, list(lines)


def _linetable310_ranges(table: bytes, firstlineno: int) -> Ranges:
    """3.10 (Objects/lnotab_notes.txt, _PyLineTable_NextAddressRange): every pair is the
    range [end, end + first byte) with the line changed by the second byte; -128: no line."""
    starts: list[int] = []
    lines: list[int | None] = []
    end, line = 0, firstlineno
    for i in range(0, len(table) - 1, 2):
        start, end = end, end + table[i]
        delta = table[i + 1]
        delta = delta - 256 if delta > 127 else delta
        if delta == -128:
            current = None
        else:
            line += delta
            current = line
        if end > start:  # empty ranges only move the line
            starts.append(start)
            lines.append(current)
    return starts, end, lines


def _varint(table: bytes, i: int) -> tuple[int, int]:
    """Objects/locations.md: 6-bit chunks, least significant first, bit 6 = more follow."""
    b = table[i]
    value, shift, i = b & 63, 6, i + 1
    while b & 64 and i < len(table):
        b = table[i]
        value |= (b & 63) << shift
        shift += 6
        i += 1
    return value, i


def _locations_ranges(table: bytes, firstlineno: int) -> Ranges:
    """3.11+ (Objects/locations.md): an entry starts with a byte whose top bit is set, bits
    3-6 the form, bits 0-2 the length in code units minus one. Forms: 0-9 short (same line,
    one column byte), 10-12 one line (line delta = form - 10, two column bytes), 13 no column
    (signed varint line delta), 14 long (signed varint line delta, three varints), 15 no
    location."""
    starts: list[int] = []
    lines: list[int | None] = []
    addr, line, i, n = 0, firstlineno, 0, len(table)
    while i < n:
        first = table[i]
        form, length = first >> 3 & 15, (first & 7) + 1
        if form == 15:
            current = None
        else:
            if form in (13, 14):
                raw = _varint(table, i + 1)[0] if i + 1 < n else 0
                line += -(raw >> 1) if raw & 1 else raw >> 1
            elif form >= 10:
                line += form - 10
            current = line
        starts.append(addr)
        lines.append(current)
        addr += length * 2  # code units -> bytes, as PyCode_Addr2Line counts
        # the next entry starts at the next byte with the top bit set (advance() in
        # Objects/codeobject.c skips this way; no other byte of an entry has it)
        i += 1
        while i < n and not table[i] & 0x80:
            i += 1
    return starts, addr, lines


def line_ranges(version: tuple[int, int], table: bytes, firstlineno: int) -> Ranges:
    if version >= (3, 11):
        return _locations_ranges(table, firstlineno)
    if version == (3, 10):
        return _linetable310_ranges(table, firstlineno)
    return _lnotab_ranges(table, firstlineno)


def line_of(ranges: Ranges, firstlineno: int, instr_index: int) -> int | None:
    """The line of instruction `instr_index` (2-byte code units) as PyCode_Addr2Line gives
    it for byte offset 2 * instr_index: a frame not started yet is at its first line."""
    if instr_index == NO_INSTRUCTION or instr_index < 0:
        return firstlineno
    starts, end, lines = ranges
    addr = instr_index * 2
    if addr >= end or not starts:
        return None
    i = bisect.bisect_right(starts, addr) - 1
    return lines[i] if i >= 0 else None


def compute_line(version: tuple[int, int], table: bytes, firstlineno: int,
                 instr_index: int) -> int | None:
    return line_of(line_ranges(version, table, firstlineno), firstlineno, instr_index)


# --- frames ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodeInfo:
    """A recorded CPython code object: its name, file and line table."""

    qualname: str | None
    filename: str | None
    firstlineno: int
    version: tuple[int, int] | None
    ranges: Ranges | None
    reason: str | None  # why the recorder could not read it


def frame_name(qualname: str, filename: str) -> str:
    """pyperf's form: `<file basename> <qualname>`."""
    return f"{os.path.basename(filename) or filename} {qualname}"


def _version(text: str | None) -> tuple[int, int] | None:
    try:
        major, minor = (text or "").split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


class PythonCodes:
    """The `pycode` rows of a recording, and the Python frames they name."""

    def __init__(self) -> None:
        self._codes: dict[int, dict[tuple[int, int], CodeInfo]] = {}  # pid -> (addr, sum)
        self._frames: dict[int, dict[tuple[int, int], Resolved]] = {}  # pid -> (A, B)

    def add(self, pid: int, addr: int, checksum: int, qualname: str | None,
            filename: str | None, firstlineno: int | None, table: bytes | None,
            version: str | None, reason: str | None) -> None:
        v = _version(version)
        if reason is None and (qualname is None or v is None):
            reason = "pycode row without a name or version"
        # the recorder cuts tables at 1 MiB; a crafted recording's longer one is cut the same
        table = (table or b"")[:MAX_LINETABLE]
        ranges = line_ranges(v, table, firstlineno or 0) if v and not reason else None
        self._codes.setdefault(pid, {})[(addr, checksum)] = CodeInfo(
            qualname, filename, firstlineno or 0, v, ranges, reason)
        self._frames.pop(pid, None)  # frames resolved before this row may have lacked it

    def forget(self, pid: int) -> None:
        self._codes.pop(pid, None)
        self._frames.pop(pid, None)

    def pids(self) -> set[int]:
        return set(self._codes) | set(self._frames)

    def frame(self, pid: int, a: int, b: int) -> Resolved:
        per_pid = self._frames.get(pid)
        if per_pid is None:
            per_pid = self._frames[pid] = {}
        got = per_pid.get((a, b))
        if got is None:
            got = per_pid[(a, b)] = self._resolve(pid, a, b)
        return got

    def _resolve(self, pid: int, a: int, b: int) -> Resolved:
        addr, checksum, instr = decode_pair(a, b)
        info = self._codes.get(pid, {}).get((addr, checksum))
        if info is None or info.reason is not None or info.ranges is None:
            reason = ("code object not recorded (the process exited before the recorder "
                      "read it)") if info is None else f"code object unreadable: {info.reason}"
            return ((Frame(f"[python code {addr:#x}]", FrameKind.PYTHON, addr, reason=reason),),
                    Unresolved(PYTHON_OBJECT, None, reason))
        line = line_of(info.ranges, info.firstlineno, instr)
        name = frame_name(info.qualname or "?", info.filename or "")
        return ((Frame(name, FrameKind.PYTHON, addr, file=info.filename, line=line,
                       start_line=info.firstlineno),), None)
