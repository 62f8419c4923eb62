"""Read what symbolization needs from one ELF file: symbol tables, build ID, debug links.

pyelftools finds and bounds the sections; the symbol entries themselves are unpacked with
`struct.iter_unpack`, which is many times faster than building one Python object per symbol
(libc's debug file has tens of thousands). Nothing here executes or maps the file: it is read.
Hostile files (bad offsets, truncated sections, absurd counts) raise ElfReadError.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from recording.elf import LoadSegment, read_elf_info
from symbolizer.inflate import SHF_COMPRESSED, InflateError, inflate_section, inflate_xz
from symbolizer.symtab import SymbolEntry, SymbolTable

STT_FUNC = 2
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
SHT_NOBITS = "SHT_NOBITS"
_BIND_RANK = {1: 2, 2: 1, 0: 0}  # GLOBAL over WEAK over LOCAL when aliases share an address


class ElfReadError(ValueError):
    """The file is not a readable ELF object."""


@dataclass(frozen=True)
class ElfSymbols:
    build_id: str | None
    symtab: SymbolTable  # .symtab functions (empty when stripped)
    dynsym: SymbolTable  # .dynsym functions
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

    def data_of(sec) -> bytes:
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
        return sec.data()

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
            _entries(data_of(sym_sec), strtab, elf.elfclass == 64, elf.little_endian))

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
    return ElfSymbols(build_id, tables[".symtab"], tables[".dynsym"], has_debug_info,
                      debuglink, debugdata, loads)


def _entries(data: bytes, strtab: bytes, is64: bool, little: bool):
    e = "<" if little else ">"
    if is64:
        fmt, width = e + "IBBHQQ", 24
    else:
        fmt, width = e + "IIIBBH", 16
    usable = len(data) - len(data) % width
    for fields in struct.iter_unpack(fmt, data[:usable]):
        if is64:
            st_name, st_info, _other, st_shndx, value, sz = fields
        else:
            st_name, value, sz, st_info, _other, st_shndx = fields
        if st_info & 0xF not in (STT_FUNC, STT_GNU_IFUNC) or st_shndx == SHN_UNDEF:
            continue
        if st_name >= len(strtab):
            continue
        end = strtab.find(b"\0", st_name)
        name = strtab[st_name:end if end >= 0 else len(strtab)]
        yield SymbolEntry(value, sz, name, _BIND_RANK.get(st_info >> 4, 0))


def inflate_debugdata(compressed: bytes) -> bytes:
    """Decompress MiniDebugInfo (.gnu_debugdata is an xz stream holding an ELF, as Fedora's
    find-debuginfo makes it), bounded in size and decoder memory."""
    try:
        return inflate_xz(compressed, ".gnu_debugdata")
    except InflateError as exc:
        raise ElfReadError(str(exc)) from None
