"""Hand-assembled CFI and ELF files for the unwind tests (no compiler, no external tools).

`eh_frame([cie(...), fde(...)...])` lays entries out and resolves each FDE's CIE pointer and
pcrel address the way a linker does, so a test states the rules it expects from instructions
it can read: see DWARF 5 section 6.4 and the LSB's .eh_frame format for the encodings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# instructions
NOP = b"\x00"
REMEMBER = b"\x0a"
RESTORE_STATE = b"\x0b"
RSP, RBP, RBX, RA = 7, 6, 3, 16


def uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        done = (v == 0 and not b & 0x40) or (v == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def advance(delta: int) -> bytes:
    if delta < 0x40:
        return bytes([0x40 | delta])
    if delta < 0x100:
        return b"\x02" + bytes([delta])
    if delta < 0x10000:
        return b"\x03" + struct.pack("<H", delta)
    return b"\x04" + struct.pack("<I", delta)


def def_cfa(reg: int, off: int) -> bytes:
    return b"\x0c" + uleb(reg) + uleb(off)


def def_cfa_offset(off: int) -> bytes:
    return b"\x0e" + uleb(off)


def def_cfa_register(reg: int) -> bytes:
    return b"\x0d" + uleb(reg)


def offset(reg: int, factored: int) -> bytes:  # saved at CFA + factored * data_align
    return bytes([0x80 | reg]) + uleb(factored)


def restore(reg: int) -> bytes:
    return bytes([0xC0 | reg])


def cfa_expression(expr: bytes) -> bytes:
    return b"\x0f" + uleb(len(expr)) + expr


def reg_expression(reg: int, expr: bytes, *, val: bool = False) -> bytes:
    return (b"\x16" if val else b"\x10") + uleb(reg) + uleb(len(expr)) + expr


def plt_expr(n: int, t: int) -> bytes:
    """binutils' lazy PLT CFA: rsp + n + (((rip & 15) >= t) << 3)"""
    return b"\x77" + sleb(n) + b"\x80\x00\x3f\x1a" + bytes([0x30 + t]) + b"\x2a\x33\x24\x22"


SIGNAL_EXPR = b"\x77" + sleb(160) + b"\x06"  # DW_OP_breg7 (rsp): 160; DW_OP_deref


@dataclass
class Cie:
    augmentation: str = "zR"
    instructions: bytes = def_cfa(RSP, 8) + offset(RA, 1)
    fde_enc: int = 0x1B              # pcrel | sdata4
    personality: bytes | None = None  # for 'P': encoding byte + pointer bytes
    lsda_enc: int = 0x1B
    version: int = 1
    code_align: int = 1
    data_align: int = -8
    ra: int = RA
    extended_length: bool = False


@dataclass
class Fde:
    start: int
    length: int
    instructions: bytes = b""
    cie: int = 0                     # index of its CIE among the entries
    aug_data: bytes = b""
    raw_pc: bytes | None = None      # pc_begin + pc_range bytes as written (no pcrel fix-up)
    extended_length: bool = False


@dataclass
class Raw:
    data: bytes


@dataclass
class Layout:
    data: bytes
    offsets: list[int] = field(default_factory=list)


def _entry(body: bytes, extended: bool) -> bytes:
    if extended:
        return b"\xff\xff\xff\xff" + struct.pack("<Q", len(body)) + body
    return struct.pack("<I", len(body)) + body


def _cie_body(c: Cie, eh: bool, extended: bool) -> bytes:
    cid = (b"\0" if eh else b"\xff") * (8 if extended else 4)  # the CIE id of each section
    body = cid + bytes([c.version]) + c.augmentation.encode() + b"\0"
    if c.version == 4:
        body += b"\x08\x00"
    body += uleb(c.code_align) + sleb(c.data_align)
    body += bytes([c.ra]) if c.version == 1 else uleb(c.ra)
    if c.augmentation.startswith("z"):
        aug = b""
        for ch in c.augmentation[1:]:
            if ch == "R":
                aug += bytes([c.fde_enc])
            elif ch == "L":
                aug += bytes([c.lsda_enc])
            elif ch == "P":
                aug += c.personality or b"\x00" + b"\0" * 8
        body += uleb(len(aug)) + aug
    return body + c.instructions


def eh_frame(entries: list, vaddr: int = 0x10000, *, eh: bool = True,
             terminator: bool = True) -> Layout:
    """Lay out CIEs, FDEs (pcrel sdata4 addresses unless raw_pc is given) and Raw bytes."""
    out = bytearray()
    offsets: list[int] = []
    for e in entries:
        offsets.append(len(out))
        if isinstance(e, Cie):
            out += _entry(_cie_body(e, eh, e.extended_length), e.extended_length)
        elif isinstance(e, Raw):
            out += e.data
        else:
            cie_off = offsets[e.cie]
            cie = entries[e.cie]
            hdr = 12 if e.extended_length else 4
            size = 8 if e.extended_length else 4
            id_pos = len(out) + hdr
            if eh:
                cptr = struct.pack("<Q" if size == 8 else "<I", id_pos - cie_off)
            else:
                cptr = struct.pack("<Q" if size == 8 else "<I", cie_off)
            pc_pos = id_pos + size
            if e.raw_pc is not None:
                pcs = e.raw_pc
            elif eh:
                pcs = struct.pack("<iI", e.start - (vaddr + pc_pos), e.length)
            else:
                pcs = struct.pack("<QQ", e.start, e.length)
            aug = uleb(len(e.aug_data)) + e.aug_data if cie.augmentation.startswith("z") else b""
            out += _entry(cptr + pcs + aug + e.instructions, e.extended_length)
    if terminator and eh:
        out += b"\0\0\0\0"
    return Layout(bytes(out), offsets)


def elf(sections: dict[str, tuple[int, bytes]], *, build_id: bytes | None = b"\x12\x34" * 10,
        machine: int = 62, elf_class: int = 2) -> bytes:
    """A minimal ELF64 little-endian ET_DYN: the named (address, bytes) sections, a GNU
    build-ID note, .shstrtab; no program headers (the table builder reads sections)."""
    secs = dict(sections)
    names = b"\0"
    name_off = {}
    all_names = [*secs, ".note.gnu.build-id", ".shstrtab"]
    for n in all_names:
        name_off[n] = len(names)
        names += n.encode() + b"\0"
    body = bytearray(b"\0" * 64)
    headers = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    for n, (addr, data) in secs.items():
        off = len(body)
        body += data
        body += b"\0" * (-len(body) % 8)
        headers.append(struct.pack("<IIQQQQIIQQ", name_off[n], 1, 2, addr, off, len(data),
                                   0, 0, 8, 0))
    if build_id is not None:
        note = struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id
        note += b"\0" * (-len(note) % 4)
        off = len(body)
        body += note
        headers.append(struct.pack("<IIQQQQIIQQ", name_off[".note.gnu.build-id"], 7, 2, 0,
                                   off, len(note), 0, 0, 4, 0))
    off = len(body)
    body += names
    body += b"\0" * (-len(body) % 8)
    headers.append(struct.pack("<IIQQQQIIQQ", name_off[".shstrtab"], 3, 0, 0, off,
                               len(names), 0, 0, 1, 0))
    shoff = len(body)
    for h in headers:
        body += h
    ident = b"\x7fELF" + bytes([elf_class, 1, 1, 0]) + b"\0" * 8
    hdr = ident + struct.pack("<HHIQQQIHHHHHH", 3, machine, 1, 0, 0, shoff, 0, 64, 56, 0, 64,
                              len(headers), len(headers) - 1)
    body[:64] = hdr
    return bytes(body)
