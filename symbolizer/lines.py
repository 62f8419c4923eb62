"""File:line and inlined frames from DWARF (.debug_info, .debug_line), for `--lines`.

`resolve_lines(path, elf_addrs)` answers, for each ELF virtual address, the chain of frames
at that address innermost first, as `addr2line -f -i` prints it:

    [(function, file, line, inlined), ...]

The innermost entry's file:line is the line-table row for the address; each caller's
file:line is the call site (DW_AT_call_file/DW_AT_call_line) of the inlined subroutine
it contains. `inlined` is True for entries that are inlined subroutines (the caller is the
next entry); the last entry is the real function. Function names are linkage names where
DWARF has them (mangled C++/Rust, demangled by the caller), else DW_AT_name; None when
no subprogram covers the address but the line table does.

Each file is indexed once and kept in memory (a small LRU): the compile-unit address ranges
at first use, each compile unit's line table and function ranges when an address first falls
in it. Malformed DWARF loses only what it breaks: an address that cannot be resolved is
absent from the answer; nothing here raises.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import IO, Any

from elftools.dwarf.compileunit import CompileUnit
from elftools.dwarf.die import DIE
from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.dwarf.ranges import BaseAddressEntry, RangeEntry
from elftools.elf.elffile import ELFFile

from recording.untrusted import open_regular
from symbolizer.inflate import MAX_FILE, MAX_SECTION, too_large, zlib_inflated_size

LineEntry = tuple[str | None, str | None, int | None, bool]

MAX_FILES = 16  # DWARF indexes kept in memory (each holds an open file)
_MAX_REF_HOPS = 8  # abstract_origin/specification chains; a cycle in bad DWARF must end
_MAX_INLINE_DEPTH = 64

_FUNC_TAGS = ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine")


def _die_ranges(die: DIE, dwarf: DWARFInfo, cu_base: int) -> list[tuple[int, int]]:
    """[low, high) address ranges of a DIE (low/high pc or DW_AT_ranges)."""
    attrs = die.attributes
    low = attrs.get("DW_AT_low_pc")
    high = attrs.get("DW_AT_high_pc")
    if low is not None and high is not None:
        # DWARF 4+: a high_pc of constant class is a length, of address class an address.
        is_address = high.form == "DW_FORM_addr" or high.form.startswith("DW_FORM_addrx")
        end = high.value if is_address else low.value + high.value
        return [(low.value, end)] if end > low.value else []
    rng = attrs.get("DW_AT_ranges")
    if rng is None:
        return []
    lists = dwarf.range_lists()
    if lists is None or not isinstance(die.cu, CompileUnit):
        return []
    base = cu_base
    out = []
    for entry in lists.get_range_list_at_offset(rng.value, cu=die.cu):
        if isinstance(entry, BaseAddressEntry):
            base = entry.base_address
        elif isinstance(entry, RangeEntry):
            lo = entry.begin_offset if entry.is_absolute else base + entry.begin_offset
            hi = entry.end_offset if entry.is_absolute else base + entry.end_offset
            if hi > lo:
                out.append((lo, hi))
    return out


def _follow(die: DIE) -> DIE:
    """The DIE that carries the name: through abstract_origin and specification links."""
    for _ in range(_MAX_REF_HOPS):
        if "DW_AT_linkage_name" in die.attributes or "DW_AT_MIPS_linkage_name" in \
                die.attributes or "DW_AT_name" in die.attributes:
            return die
        for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if ref in die.attributes:
                die = die.get_DIE_from_attribute(ref)
                break
        else:
            return die
    return die


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _function_name(die: DIE) -> str | None:
    try:
        d = _follow(die)
    except Exception:
        return None
    for attr in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name"):
        if attr in d.attributes:
            return _text(d.attributes[attr].value)
    return None


# Where compilers put function definitions: at the unit's top level (GCC, with
# DW_AT_specification to a declaration in a class) and in namespaces (clang; rustc's modules,
# impl blocks and a function's closures, in a namespace named after the function). Type
# bodies and function bodies, the bulk of a C++ unit, hold only declarations, variables and
# inlined calls; DW_AT_sibling lets the walk skip them without parsing them (3 s of a C++
# unit's 25,000 DIEs in pyelftools). GNU C nested functions are not found (their caller is).
_HOLD_FUNCTIONS = frozenset({"DW_TAG_namespace", "DW_TAG_module"})


def _subprograms(top: DIE) -> Iterator[DIE]:
    todo = [top]
    while todo:
        for child in todo.pop().iter_children():
            if child.tag == "DW_TAG_subprogram":
                yield child
            if child.tag in _HOLD_FUNCTIONS and child.has_children:
                todo.append(child)


class _Unit:
    """One compile unit: its line table rows and its functions, parsed on first use."""

    def __init__(self, dwarf: DWARFInfo, cu: CompileUnit) -> None:
        self.dwarf = dwarf
        self.cu = cu
        top = cu.get_top_DIE()
        self.comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) \
            if "DW_AT_comp_dir" in top.attributes else None
        low = top.attributes.get("DW_AT_low_pc")
        self.base = low.value if low is not None else 0
        self.files: list[str | None] = []
        self.files_one_based = True
        # Line rows sorted by address: (address, rank, file index, line); rank 0 marks the end
        # of a sequence, so at an address where one sequence ends and another begins the
        # beginning (rank 1) sorts last and wins.
        self.row_addrs: list[int] = []
        self.rows: list[tuple[int, int, int, int]] = []
        self.funcs: list[tuple[int, int, DIE]] = []  # (low, high, subprogram), sorted
        self.func_lows: list[int] = []
        self._parse_lines()
        self._parse_functions()

    def _parse_lines(self) -> None:
        prog = self.dwarf.line_program_for_CU(self.cu)
        if prog is None:
            return
        header = prog.header
        version = header["version"]
        self.files_one_based = version < 5
        dirs = [_text(d) for d in header["include_directory"]]
        for fe in header["file_entry"]:
            self.files.append(self._file_path(_text(fe.name), fe.dir_index, dirs, version))
        rows = []
        for entry in prog.get_entries():
            st = entry.state
            if st is None:
                continue
            rows.append((st.address, 0 if st.end_sequence else 1, st.file, st.line))
        rows.sort(key=lambda r: (r[0], r[1]))  # stable: within one address, the last row wins
        self.rows = rows
        self.row_addrs = [r[0] for r in rows]

    def _file_path(self, name: str | None, dir_index: int, dirs: list[str | None],
                   version: int) -> str | None:
        if not name:
            return None
        if os.path.isabs(name):
            return name
        # DWARF 5 numbers directories from 0 (the compilation directory itself); DWARF 2-4
        # from 1, with 0 meaning the compilation directory.
        if version >= 5:
            d = dirs[dir_index] if 0 <= dir_index < len(dirs) else None
        else:
            d = dirs[dir_index - 1] if 0 < dir_index <= len(dirs) else self.comp_dir
        if d and not os.path.isabs(d) and self.comp_dir:
            d = os.path.join(self.comp_dir, d)
        return os.path.join(d, name) if d else name

    def file_name(self, index: int | None) -> str | None:
        if index is None:
            return None
        i = index - 1 if self.files_one_based else index
        return self.files[i] if 0 <= i < len(self.files) else None

    def _parse_functions(self) -> None:
        funcs = []
        for die in _subprograms(self.cu.get_top_DIE()):
            try:
                for lo, hi in _die_ranges(die, self.dwarf, self.base):
                    funcs.append((lo, hi, die))
            except Exception:
                continue  # one broken function does not hide the others
        funcs.sort(key=lambda f: (f[0], -f[1]))
        self.funcs = funcs
        self.func_lows = [f[0] for f in funcs]

    def line_at(self, addr: int) -> tuple[str | None, int | None] | None:
        i = bisect.bisect_right(self.row_addrs, addr) - 1
        if i < 0:
            return None
        _, rank, file_index, line = self.rows[i]
        if rank == 0:
            return None  # past the end of a sequence: not code this table describes
        return self.file_name(file_index), line or None

    def subprogram_at(self, addr: int) -> DIE | None:
        # The innermost (shortest) range that holds the address; ranges nest or are disjoint.
        best: tuple[int, DIE] | None = None
        i = bisect.bisect_right(self.func_lows, addr) - 1
        # Walk back over candidates; stop after a bounded number to keep lookups fast.
        for lo, hi, die in reversed(self.funcs[max(0, i - 64):i + 1]):
            if lo <= addr < hi and (best is None or hi - lo < best[0]):
                best = (hi - lo, die)
        return best[1] if best else None

    def inline_chain(self, func: DIE, addr: int) -> list[DIE]:
        """[subprogram, inlined, inlined, ...] outermost first, the DIEs that hold addr."""
        chain = [func]
        node = func
        for _ in range(_MAX_INLINE_DEPTH):
            found = self._child_containing(node, addr)
            if found is None:
                break
            chain.append(found)
            node = found
        return chain

    def _child_containing(self, die: DIE, addr: int) -> DIE | None:
        # Inlined subroutines may sit inside lexical blocks: search through those.
        todo = list(die.iter_children())
        while todo:
            child = todo.pop(0)
            if child.tag == "DW_TAG_inlined_subroutine":
                if any(lo <= addr < hi for lo, hi in _die_ranges(child, self.dwarf, self.base)):
                    return child
            elif child.tag == "DW_TAG_lexical_block":
                ranges = _die_ranges(child, self.dwarf, self.base)
                if not ranges or any(lo <= addr < hi for lo, hi in ranges):
                    todo.extend(child.iter_children())
        return None

    def lookup(self, addr: int) -> list[LineEntry]:
        line = self.line_at(addr)
        func = self.subprogram_at(addr)
        if func is None:
            return [(None, line[0], line[1], False)] if line else []
        chain = self.inline_chain(func, addr)
        file, lineno = line if line else (None, None)
        out: list[LineEntry] = []
        for die in reversed(chain):
            out.append((_function_name(die), file, lineno,
                        die.tag == "DW_TAG_inlined_subroutine"))
            # The caller's position is where this inlined call was made.
            attrs = die.attributes
            file = self.file_name(attrs["DW_AT_call_file"].value) \
                if "DW_AT_call_file" in attrs else None
            lineno = attrs["DW_AT_call_line"].value if "DW_AT_call_line" in attrs else None
        return out


def _check_inflated_sizes(elf: ELFFile, stream: IO[bytes]) -> None:
    """Refuse (InflateError) DWARF that would inflate past the limits before pyelftools
    inflates it: it trusts an SHF_COMPRESSED section's declared size, which may be anything,
    and inflates a legacy .zdebug_* section whole whatever it declares."""
    total = 0
    for sec in elf.iter_sections():
        name = sec.name
        if name.startswith(".debug_") and sec.compressed:
            size = sec.data_size  # ch_size: pyelftools inflates at most this much
        elif name.startswith(".zdebug_") and sec["sh_size"] > 12:
            # past "ZLIB" and the declared size
            chunks = _read_range(stream, sec["sh_offset"] + 12, sec["sh_size"] - 12)
            size = zlib_inflated_size(chunks, MAX_SECTION, name)
        else:
            continue
        if size > MAX_SECTION:
            raise too_large(name, size, MAX_SECTION)
        total += size
        if total > MAX_FILE:
            raise too_large("DWARF", total, MAX_FILE)


def _read_range(stream: IO[bytes], offset: int, length: int) -> Iterator[bytes]:
    stream.seek(offset)
    while length > 0 and (chunk := stream.read(min(1 << 20, length))):
        length -= len(chunk)
        yield chunk


class _DwarfIndex:
    """A file's compile units by address; units parsed when an address first needs them."""

    def __init__(self, path: str) -> None:
        # kept open for lazy reads; a regular file only, opened without blocking (a FIFO
        # swapped in for a recorded binary must not hang --lines)
        self.stream: IO[bytes] = open_regular(path)
        try:
            elf = ELFFile(self.stream)
            if not elf.has_dwarf_info():
                raise ValueError("no DWARF")
            _check_inflated_sizes(elf, self.stream)
            self.dwarf = elf.get_dwarf_info(follow_links=False)
            self.cus: dict[int, CompileUnit] = {}
            self.ranges = self._aranges() or self._scan_units()
            self.ranges.sort()
            self.lows = [r[0] for r in self.ranges]
            self.units: dict[int, _Unit | None] = {}
        except Exception:
            self.stream.close()
            raise

    def _aranges(self) -> list[tuple[int, int, int]]:
        """[low, high, CU offset] from .debug_aranges, the index compilers emit for this:
        reading it costs nothing next to parsing every unit's first DIE, which needs each
        unit's abbreviation table (27 s of glibc's debug file in pyelftools)."""
        try:
            aranges = self.dwarf.get_aranges()
        except Exception:
            return []  # a broken index: scan the units instead
        if aranges is None:
            return []
        return [(e.begin_addr, e.begin_addr + e.length, e.info_offset)
                for e in aranges.entries if e.length]

    def _scan_units(self) -> list[tuple[int, int, int]]:
        ranges: list[tuple[int, int, int]] = []
        for cu in self.dwarf.iter_CUs():
            try:
                top = cu.get_top_DIE()
                low = top.attributes.get("DW_AT_low_pc")
                base = low.value if low is not None else 0
                for lo, hi in _die_ranges(top, self.dwarf, base):
                    ranges.append((lo, hi, cu.cu_offset))
                self.cus[cu.cu_offset] = cu
            except Exception:
                continue
        return ranges

    def _cu(self, offset: int) -> CompileUnit:
        cu = self.cus.get(offset)
        if cu is None:
            cu = self.cus[offset] = self.dwarf.get_CU_at(offset)
        return cu

    def unit_at(self, addr: int) -> _Unit | None:
        i = bisect.bisect_right(self.lows, addr) - 1
        for lo, hi, off in reversed(self.ranges[max(0, i - 8):i + 1]):
            if lo <= addr < hi:
                if off not in self.units:
                    try:
                        self.units[off] = _Unit(self.dwarf, self._cu(off))
                    except Exception:
                        self.units[off] = None  # broken unit: its addresses stay unresolved
                return self.units[off]
        return None

    def lookup(self, addr: int) -> list[LineEntry]:
        unit = self.unit_at(addr)
        return unit.lookup(addr) if unit else []

    def close(self) -> None:
        self.stream.close()


_cache: OrderedDict[tuple[str, int, int], _DwarfIndex | None] = OrderedDict()


def _index(path: str) -> _DwarfIndex | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)  # a rebuilt file is indexed anew
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    try:
        index: _DwarfIndex | None = _DwarfIndex(path)
    except Exception:
        index = None  # not ELF, no DWARF, or DWARF too broken to index
    _cache[key] = index
    while len(_cache) > MAX_FILES:
        _, old = _cache.popitem(last=False)
        if old is not None:
            old.close()
    return index


def resolve_lines(path: str, elf_addrs: Iterable[int]) -> dict[int, list[LineEntry]]:
    """Frames at each ELF address of the file at `path`, innermost first; see the module doc.
    Addresses without line information are left out."""
    out: dict[int, list[LineEntry]] = {}
    index = _index(path)
    if index is None:
        return out
    for addr in elf_addrs:
        try:
            entries = index.lookup(addr)
        except Exception:
            continue  # malformed DWARF at this address: leave it to the symbol table
        if entries:
            out[addr] = entries
    return out


def clear_cache() -> None:
    while _cache:
        _, index = _cache.popitem()
        if index is not None:
            index.close()
