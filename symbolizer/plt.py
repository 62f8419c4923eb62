"""`name@plt` symbols for PLT stubs, which no symbol table lists, as perf synthesizes them
(tools/perf/util/symbol-elf.c, dso__synthesize_plt_symbols and ..._plt_got_symbols).

A call to a shared-library function goes through a 16-byte stub in `.plt` (or, with Intel
CET/IBT, `.plt.sec`); a sample in the stub is time the caller spends calling that function.
The stubs are in the order of their `.rela.plt` relocations sorted by GOT slot (x86 puts
IRELATIVE relocations out of order), each relocation naming the called symbol. A lazy `.plt`
starts with a header entry (PLT0, the resolver trampoline) unless it has exactly one entry per
relocation; with `.plt.sec`, `.plt` holds only the lazy-binding stubs and is one `.plt`
symbol. `.plt.got` stubs (functions whose GOT slot is filled at load time, e.g. also
address-taken) each `jmp *slot(%rip)` to a slot that a `.rela.dyn` relocation names.

PLT contents are in the binary only: a debug file keeps the section headers with SHT_NOBITS,
so the caller reads the PLT of the binary itself (perf: "always look at the original dso").
Nothing here trusts a count or an offset: out-of-range entries are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

from symbolizer.symtab import SymbolEntry, SymbolTable

R_X86_64_IRELATIVE = 37
R_386_IRELATIVE = 42
_MAX_ENTRIES = 1 << 16  # far above any real PLT; a crafted size cannot make us loop for long
_PLT_RANK = 1 << 62  # above every symbol-table rank: a stub is what executes there


def plt_entries(elf: Any, sections: dict[str, Any], data_of: Callable[[Any], bytes],
                functions: SymbolTable) -> list[SymbolEntry]:
    """SymbolEntries for the PLT stubs of an ELF file (empty when it has no PLT contents).
    `functions` (its function symbols) names IRELATIVE stubs by their resolver, as perf."""
    machine = elf["e_machine"]
    x86 = machine in ("EM_X86_64", "EM_386")
    plt = sections.get(".plt")
    if plt is None or plt["sh_type"] == "SHT_NOBITS" or not plt["sh_size"]:
        return []
    out: list[SymbolEntry] = []
    header, entry = _plt_sizes(machine, plt)
    if not entry:
        return []
    plt_sec = sections.get(".plt.sec") if x86 else None
    if plt_sec is not None and plt_sec["sh_type"] != "SHT_NOBITS":
        _, entry = _plt_sizes(machine, plt_sec)
        out.append(SymbolEntry(plt["sh_addr"], plt["sh_size"], b".plt", _PLT_RANK))
        start, end, lazy = plt_sec["sh_addr"], plt_sec["sh_addr"] + plt_sec["sh_size"], False
    else:
        start, end, lazy = plt["sh_addr"], plt["sh_addr"] + plt["sh_size"], True
    relocs = _relocations(elf, sections, data_of, (".rela.plt", ".rel.plt"))
    if lazy:
        if len(relocs) * entry == plt["sh_size"]:
            header = 0  # one stub per relocation: a non-lazy PLT without PLT0
        elif header:
            out.append(SymbolEntry(start, header, b".plt", _PLT_RANK))
        start += header
    if x86:
        relocs.sort(key=lambda r: r[0])
    irelative = R_X86_64_IRELATIVE if machine == "EM_X86_64" else R_386_IRELATIVE
    for i, (_slot, rtype, name, addend) in enumerate(relocs[:_MAX_ENTRIES]):
        addr = start + i * entry
        if addr + entry > end:
            break
        if not name and rtype == irelative and x86:
            hit = functions.lookup(addend)
            name = hit[0].encode() if hit and hit[1] == addend else b""
        out.append(SymbolEntry(addr, entry, _stub_name(name, addr), _PLT_RANK))
    if x86:
        out += _plt_got(elf, sections, data_of)
    return out


def plt_stubs(table: SymbolTable) -> SymbolTable:
    """The PLT stubs of a table that holds them among other symbols (by their names)."""
    return SymbolTable.build(e for e in table.entries()
                             if e.name.endswith(b"@plt") or e.name == b".plt")


def _stub_name(name: bytes, addr: int) -> bytes:
    return (name or f"offset_{addr:#x}".encode()) + b"@plt"


def _plt_sizes(machine: str, sec: Any) -> tuple[int, int]:
    """(header size, entry size) as perf's get_plt_sizes: fixed by the ABI on ARM, AArch64
    and SPARC; on x86 the entry size (8 or 16, else guessed from the alignment)."""
    fixed = {"EM_ARM": (20, 12), "EM_AARCH64": (32, 16), "EM_SPARC": (48, 12),
             "EM_SPARCV9": (128, 32), "EM_LOONGARCH": (32, 16)}
    if machine in fixed:
        return fixed[machine]
    size = sec["sh_entsize"]
    if machine in ("EM_X86_64", "EM_386"):
        if size not in (8, 16):
            size = 8 if sec["sh_addralign"] == 8 else 16
        return size, size
    return size, size


def _relocations(elf: Any, sections: dict[str, Any], data_of: Callable[[Any], bytes],
                 names: tuple[str, ...]) -> list[tuple[int, int, bytes, int]]:
    """(r_offset, type, symbol name, addend) of the first of `names` that exists."""
    for sec_name in names:
        sec = sections.get(sec_name)
        if sec is None or sec["sh_type"] not in ("SHT_RELA", "SHT_REL"):
            continue
        link = sec["sh_link"]
        if not 0 < link < elf.num_sections():
            return []
        symsec = elf.get_section(link)
        strlink = symsec["sh_link"]
        if not 0 < strlink < elf.num_sections():
            return []
        syms, strtab = data_of(symsec), data_of(elf.get_section(strlink))
        return list(_parse_relocs(data_of(sec), sec["sh_type"] == "SHT_RELA", elf.elfclass == 64,
                                  elf.little_endian, syms, strtab))
    return []


def _parse_relocs(data: bytes, rela: bool, is64: bool, little: bool, syms: bytes,
                  strtab: bytes) -> Iterator[tuple[int, int, bytes, int]]:
    e = "<" if little else ">"
    if is64:
        fmt, sym_width = e + ("QQq" if rela else "QQ"), 24
    else:
        fmt, sym_width = e + ("IIi" if rela else "II"), 16
    width = struct.calcsize(fmt)
    usable = len(data) - len(data) % width
    for fields in struct.iter_unpack(fmt, data[:usable][:width * _MAX_ENTRIES]):
        offset, info = fields[0], fields[1]
        addend = fields[2] if rela else 0
        sym, rtype = (info >> 32, info & 0xFFFFFFFF) if is64 else (info >> 8, info & 0xFF)
        name = b""
        pos = sym * sym_width
        if sym and pos + sym_width <= len(syms):
            (st_name,) = struct.unpack_from(e + "I", syms, pos)
            if st_name < len(strtab):
                nul = strtab.find(b"\0", st_name)
                name = strtab[st_name:nul if nul >= 0 else len(strtab)]
        yield offset, rtype, name, addend


def _plt_got(elf: Any, sections: dict[str, Any], data_of: Callable[[Any], bytes]
             ) -> list[SymbolEntry]:
    """`.plt.got` stubs: `[endbr64] [bnd] jmp *disp32(%rip)`, named by the .rela.dyn
    relocation of the GOT slot they jump through (perf's get_plt_got_name)."""
    sec = sections.get(".plt.got")
    if sec is None or sec["sh_type"] == "SHT_NOBITS" or not sec["sh_entsize"]:
        return []
    by_slot = {off: name for off, _t, name, _a in
               _relocations(elf, sections, data_of, (".rela.dyn", ".rel.dyn")) if name}
    data = data_of(sec)
    size = sec["sh_entsize"]
    out = []
    for pos in range(0, min(len(data), size * _MAX_ENTRIES) - size + 1, size):
        addr = sec["sh_addr"] + pos
        slot = _jmp_slot(data[pos:pos + size], addr)
        name = by_slot.get(slot, b"") if slot is not None else b""
        out.append(SymbolEntry(addr, size, _stub_name(name, addr), _PLT_RANK))
    return out


def _jmp_slot(code: bytes, addr: int) -> int | None:
    n = 4 if code[:4] == b"\xf3\x0f\x1e\xfa" else 0  # endbr64
    if code[n:n + 1] == b"\xf2":  # bnd prefix (MPX)
        n += 1
    if code[n:n + 2] != b"\xff\x25" or len(code) < n + 6:
        return None
    disp: int
    (disp,) = struct.unpack_from("<i", code, n + 2)
    return addr + n + 6 + disp  # rip-relative: from the end of the instruction
