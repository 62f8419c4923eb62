"""Read what symbolization needs from one ELF file: symbol tables, build ID, debug links.

pyelftools finds and bounds the sections; the symbol entries themselves are unpacked with
`struct.iter_unpack`, which is many times faster than building one Python object per symbol
(libc's debug file has tens of thousands). Nothing here executes or maps the file: it is read.
Hostile files (bad offsets, truncated sections, absurd counts) raise ElfReadError.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from recording.elf import LoadSegment, read_elf_info
from symbolizer.inflate import SHF_COMPRESSED, InflateError, inflate_section, inflate_xz
from symbolizer.plt import plt_entries
from symbolizer.symtab import SymbolEntry, SymbolTable

STT_NOTYPE = 0
STT_FUNC = 2
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00  # SHN_ABS, SHN_COMMON, ...: no section, so no code address
SHF_ALLOC = 0x2
STV_INTERNAL, STV_HIDDEN = 1, 2
SHT_NOBITS = "SHT_NOBITS"
# perf's choose_best_symbol among aliases: GLOBAL over LOCAL (and GNU_UNIQUE) over WEAK
_BIND_RANK = {1: 2, 2: 0}


class ElfReadError(ValueError):
    """The file is not a readable ELF object."""


@dataclass(frozen=True)
class ElfSymbols:
    """The symbol tables of one ELF file, and where its debug file may be."""

    build_id: str | None
    symtab: SymbolTable  # .symtab functions and code labels (empty when stripped)
    dynsym: SymbolTable  # .dynsym functions
    plt: SymbolTable  # `name@plt` stubs (symbolizer/plt.py); empty in a debug file
    has_debug_info: bool  # a .debug_info with contents: usable for --lines
    debuglink: tuple[str, int] | None  # .gnu_debuglink (file name, CRC32)
    debugdata: bytes | None  # .gnu_debugdata, xz-compressed MiniDebugInfo
    loads: tuple[LoadSegment, ...]


def read_elf_symbols(f: BinaryIO, size: int) -> ElfSymbols:
    try:
        info = read_elf_info(f, size)
        f.seek(0)
        return _read(f, size, info.build_id, info.loads)
    except ElfReadError:
        raise
    except Exception as exc:
        # pyelftools and struct raise a variety of errors on hostile input; all of them mean
        # "not usable", and one bad object must not stop the run.
        raise ElfReadError(f"{type(exc).__name__}: {exc}"[:200]) from None


def read_elf_symbols_bytes(data: bytes) -> ElfSymbols:
    return read_elf_symbols(io.BytesIO(data), len(data))


def _read(f: BinaryIO, size: int, build_id: str | None,
          loads: tuple[LoadSegment, ...]) -> ElfSymbols:
    from elftools.elf.elffile import ELFFile  # only cold runs parse ELF: keep warm start-up fast

    elf = ELFFile(f)
    n = elf.num_sections()
    if n * max(elf["e_shentsize"], 1) > size:
        raise ElfReadError("more section headers than the file can hold")
    sections: dict[str, Any] = {}
    for i in range(n):
        sec = elf.get_section(i)
        sections.setdefault(sec.name, sec)

    def data_of(sec: Any) -> bytes:
        if sec["sh_type"] == SHT_NOBITS:
            return b""
        if sec["sh_offset"] + sec["sh_size"] > size:
            raise ElfReadError(f"section {sec.name} runs past the end of the file")
        if sec["sh_flags"] & SHF_COMPRESSED:
            # inflated here, bounded, not by pyelftools (which trusts the declared size)
            f.seek(sec["sh_offset"])
            try:
                return inflate_section(f.read(sec["sh_size"]), elf.elfclass == 64,
                                       elf.little_endian, sec.name)
            except InflateError as exc:
                raise ElfReadError(str(exc)) from None
        data: bytes = sec.data()  # pyelftools is untyped
        return data

    # Zero-sized symbols (hand-written assembly: __restore_rt, ld.so's _start) extend to the
    # next symbol, as perf's symbols__fixup_end does, but never past the end of their section:
    # glibc's zero-sized _init in .init would otherwise swallow the .plt stubs after it.
    ranges = sorted((sec["sh_addr"], sec["sh_addr"] + sec["sh_size"])
                    for sec in (elf.get_section(i) for i in range(1, n))
                    if sec["sh_flags"] & SHF_ALLOC and sec["sh_size"])
    kinds = {i: _section_kind(elf.get_section(i)) for i in range(1, n)}
    tables = {}
    for name in (".symtab", ".dynsym"):
        sym_sec = sections.get(name)
        if sym_sec is None or sym_sec["sh_type"] == SHT_NOBITS:
            tables[name] = SymbolTable.empty()
            continue
        link = sym_sec["sh_link"]
        if not 0 < link < n:
            raise ElfReadError(f"{name} links to a missing string table")
        strtab = data_of(elf.get_section(link))
        tables[name] = SymbolTable.build(
            _entries(data_of(sym_sec), strtab, elf.elfclass == 64, elf.little_endian, kinds)
        ).bounded(ranges)

    try:
        plt = SymbolTable.build(plt_entries(
            elf, sections, data_of, tables[".symtab"] if len(tables[".symtab"])
            else tables[".dynsym"]))
    except (ElfReadError, ValueError, KeyError, struct.error):
        plt = SymbolTable.empty()  # a broken PLT loses its stubs' names, not the object's

    debuglink = None
    link_sec = sections.get(".gnu_debuglink")
    if link_sec is not None:
        raw = data_of(link_sec)
        nul = raw.find(b"\0")
        if nul > 0:
            crc_off = (nul + 4) & ~3
            if crc_off + 4 <= len(raw):
                (crc,) = struct.unpack_from("<I" if elf.little_endian else ">I", raw, crc_off)
                debuglink = (raw[:nul].decode("utf-8", "replace"), crc)

    data_sec = sections.get(".gnu_debugdata")
    debugdata = data_of(data_sec) if data_sec is not None else None
    dbg = sections.get(".debug_info")
    has_debug_info = dbg is not None and dbg["sh_type"] != SHT_NOBITS and dbg["sh_size"] > 0
    return ElfSymbols(build_id, tables[".symtab"], tables[".dynsym"], plt, has_debug_info,
                      debuglink, debugdata, loads)


def _section_kind(sec: Any) -> int:
    """0: no code address (not loaded); 1: loaded; 2: loaded and where perf takes labels."""
    if not sec["sh_flags"] & SHF_ALLOC:
        return 0  # .gnu.warning.* and the like: never in memory (perf skips them too)
    return 2 if "text" in sec.name else 1


def _entries(data: bytes, strtab: bytes, is64: bool, little: bool, kinds: dict[int, int]
             ) -> Iterator[SymbolEntry]:
    """Function symbols, and untyped labels in text sections (ld.so's _start and
    _dl_start_user), as perf's elf_sym__is_function / elf_sym__is_label take them."""
    e = "<" if little else ">"
    if is64:
        fmt, width = e + "IBBHQQ", 24
    else:
        fmt, width = e + "IIIBBH", 16
    usable = len(data) - len(data) % width
    for index, fields in enumerate(struct.iter_unpack(fmt, data[:usable])):
        if is64:
            st_name, st_info, other, st_shndx, value, sz = fields
        else:
            st_name, value, sz, st_info, other, st_shndx = fields
        typ = st_info & 0xF
        if st_shndx == SHN_UNDEF or st_shndx >= SHN_LORESERVE or not st_name:
            continue
        kind = kinds.get(st_shndx, 0)
        if typ in (STT_FUNC, STT_GNU_IFUNC):
            if not kind:
                continue
        elif typ != STT_NOTYPE or kind != 2 or other & 3 in (STV_INTERNAL, STV_HIDDEN):
            continue
        if st_name >= len(strtab):
            continue
        end = strtab.find(b"\0", st_name)
        name = strtab[st_name:end if end >= 0 else len(strtab)]
        # perf_rank, inlined: this loop runs once per symbol of every cold object
        rank = ((sz > 0) << 60 | (typ != STT_NOTYPE) << 59
                | _BIND_RANK.get(st_info >> 4, 1) << 57
                | (255 - min(len(name) - len(name.lstrip(b"_")), 255)) << 49
                | min(len(name), 0xFFFF) << 33 | (not name.startswith(b"SyS")) << 32
                | (0xFFFFFFFF - min(index, 0xFFFFFFFF)))
        yield SymbolEntry(value, sz, name, rank)


def perf_rank(size: int, typ: int, bind: int, name: bytes, index: int) -> int:
    """Which of several symbols at one address names it, as perf's choose_best_symbol
    (tools/perf/util/symbol.c): one with a size; a function over a label; GLOBAL over LOCAL
    over WEAK; fewer leading underscores; the longer name; not a "SyS" syscall alias; then
    the first in the table. glibc defines __libc_start_main@@GLIBC_2.34,
    __libc_start_main@GLIBC_2.2.5 and the local __libc_start_main_impl at one address; perf
    prints the versioned name as the table spells it, and so do we. Encoded in one integer,
    highest wins."""
    underscores = len(name) - len(name.lstrip(b"_"))
    rank = int(size > 0)
    rank = rank << 1 | int(typ != STT_NOTYPE)
    rank = rank << 2 | _BIND_RANK.get(bind, 1)
    rank = rank << 8 | (255 - min(underscores, 255))
    rank = rank << 16 | min(len(name), 0xFFFF)
    rank = rank << 1 | int(not name.startswith(b"SyS"))
    return rank << 32 | (0xFFFFFFFF - min(index, 0xFFFFFFFF))


def inflate_debugdata(compressed: bytes) -> bytes:
    """Decompress MiniDebugInfo (.gnu_debugdata is an xz stream holding an ELF, as Fedora's
    find-debuginfo makes it), bounded in size and decoder memory."""
    try:
        return inflate_xz(compressed, ".gnu_debugdata")
    except InflateError as exc:
        raise ElfReadError(str(exc)) from None
