"""Just enough ELF to identify an object: header, PT_LOAD program headers, GNU build ID,
and named sections. Used by the recorder on live files and by the symbolizer to check every
candidate debug file. Hostile input raises ElfError; nothing here trusts an offset unchecked.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
PT_NOTE = 4
NT_GNU_BUILD_ID = 3
SHT_NOTE = 7
SHT_NOBITS = 8
ET_NAMES = {1: "REL", 2: "EXEC", 3: "DYN", 4: "CORE"}
MAX_HEADERS = 65535


class ElfError(ValueError):
    """Not an ELF file, or one whose headers point outside it."""


@dataclass(frozen=True)
class LoadSegment:
    """A PT_LOAD program header: where a file range is mapped in the ELF address space."""

    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int  # PF_X=1, PF_W=2, PF_R=4


@dataclass(frozen=True)
class Section:
    """A section header, with its name from .shstrtab."""

    name: str
    type: int
    addr: int
    offset: int
    size: int


@dataclass(frozen=True)
class ElfInfo:
    """What a recording keeps of an ELF file's headers: type, build ID, loads, sections."""

    elf_type: str
    machine: int
    is64: bool
    little_endian: bool
    build_id: str | None
    loads: tuple[LoadSegment, ...]
    sections: tuple[Section, ...] = field(default=())
    entry: int = 0  # e_entry: where the kernel starts a process running this object

    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None


class SeekableFile(Protocol):
    """What read_elf_info needs of a file: an open binary file, or unwind's pread reader."""

    def seek(self, offset: int, /) -> int: ...
    def read(self, n: int, /) -> bytes: ...


class _Reader:
    def __init__(self, f: SeekableFile, size: int) -> None:
        self.f = f
        self.size = size

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise ElfError(f"range {offset:#x}+{n:#x} lies outside the file ({self.size} bytes)")
        self.f.seek(offset)
        data = self.f.read(n)
        if len(data) != n:
            raise ElfError("file shorter than its headers say")
        return data


def read_elf_info(f: SeekableFile, size: int, *, want_sections: bool = True) -> ElfInfo:
    """Parse an open binary file of `size` bytes."""
    r = _Reader(f, size)
    ident = r.read(0, 16)
    if ident[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file")
    is64 = ident[4] == 2
    if ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise ElfError("bad ELF class or data encoding")
    e = "<" if ident[5] == 1 else ">"
    if is64:
        hdr = struct.unpack(e + "HHIQQQIHHHHHH", r.read(16, 48))
    else:
        hdr = struct.unpack(e + "HHIIIIIHHHHHH", r.read(16, 36))
    (e_type, e_machine, _ver, e_entry, e_phoff, e_shoff, _flags, _ehsize,
     e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx) = hdr

    loads: list[LoadSegment] = []
    notes: list[tuple[int, int]] = []
    ph_fmt = e + ("IIQQQQQQ" if is64 else "IIIIIIII")
    ph_size = struct.calcsize(ph_fmt)
    if e_phnum and e_phentsize < ph_size:
        raise ElfError("program header entries too small")
    for i in range(min(e_phnum, MAX_HEADERS)):
        raw = r.read(e_phoff + i * e_phentsize, ph_size)
        if is64:
            fields = struct.unpack(ph_fmt, raw)
            p_type, p_flags, p_off, p_vaddr, _pa, p_filesz, p_memsz, _al = fields
        else:
            fields = struct.unpack(ph_fmt, raw)
            p_type, p_off, p_vaddr, _pa, p_filesz, p_memsz, p_flags, _al = fields
        if p_type == PT_LOAD:
            loads.append(LoadSegment(p_off, p_vaddr, p_filesz, p_memsz, p_flags))
        elif p_type == PT_NOTE:
            notes.append((p_off, p_filesz))

    sections: list[Section] = []
    if want_sections and e_shoff and e_shnum:
        sh_fmt = e + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII")
        sh_size = struct.calcsize(sh_fmt)
        if e_shentsize < sh_size:
            raise ElfError("section header entries too small")
        raw_secs = []
        for i in range(min(e_shnum, MAX_HEADERS)):
            raw_secs.append(struct.unpack(sh_fmt, r.read(e_shoff + i * e_shentsize, sh_size)))
        strtab = b""
        if e_shstrndx < len(raw_secs):
            s = raw_secs[e_shstrndx]
            if s[1] != SHT_NOBITS:
                strtab = r.read(s[4], min(s[5], 1 << 20))
        for s in raw_secs:
            name_off = s[0]
            end = strtab.find(b"\0", name_off) if name_off < len(strtab) else -1
            name = strtab[name_off:end].decode("utf-8", "replace") if end >= 0 else ""
            sections.append(Section(name, s[1], s[3], s[4], s[5]))
            if s[1] == SHT_NOTE:
                notes.append((s[4], s[5]))

    build_id = None
    for off, length in notes:
        try:
            build_id = find_build_id(r.read(off, min(length, 1 << 16)), e)
        except ElfError:
            continue
        if build_id:
            break
    return ElfInfo(
        elf_type=ET_NAMES.get(e_type, str(e_type)),
        machine=e_machine,
        is64=is64,
        little_endian=e == "<",
        build_id=build_id,
        loads=tuple(loads),
        sections=tuple(sections),
        entry=e_entry,
    )


def find_build_id(data: bytes, e: str) -> str | None:
    """Walk ELF notes (namesz, descsz, type, name, desc; each padded to 4 bytes)."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(e + "III", data, pos)
        pos += 12
        name_end = pos + ((namesz + 3) & ~3)
        desc_end = name_end + ((descsz + 3) & ~3)
        if desc_end > len(data):
            raise ElfError("note runs past its segment")
        if ntype == NT_GNU_BUILD_ID and data[pos:pos + namesz].rstrip(b"\0") == b"GNU":
            return data[name_end:name_end + descsz].hex()
        pos = desc_end
    return None


def elf_info_of_path(path: str, *, want_sections: bool = True) -> ElfInfo:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            return read_elf_info(f, size, want_sections=want_sections)
    except struct.error as exc:
        raise ElfError(f"truncated header: {exc}") from None


def vaddr_of_offset(loads: Iterable[LoadSegment], offset: int) -> int | None:
    """The ELF virtual address of a file offset, via the PT_LOAD segment that holds it.

    The loader maps each PT_LOAD so that p_offset lands at p_vaddr (plus the load bias for
    ET_DYN); symbols use p_vaddr. So elf_addr = offset - p_offset + p_vaddr. This is valid for
    PIE, non-PIE (bias 0) and shared objects alike, and does not assume vaddr == offset, which
    fails for objects linked with -z separate-code or non-default layouts. Symbolizers must
    use the recorded headers: `objcopy --only-keep-debug` files rewrite their own.
    """
    loads = list(loads)
    for seg in loads:
        if seg.offset <= offset < seg.offset + seg.filesz:
            return offset - seg.offset + seg.vaddr
    # Page rounding lets a mapping start before p_offset of its segment (the loader maps from
    # the page holding p_offset); accept an offset in the same page as a segment's start.
    for seg in loads:
        page_start = seg.offset & ~0xFFF
        if page_start <= offset < seg.offset + max(seg.filesz, seg.memsz):
            return offset - seg.offset + seg.vaddr
    return None
