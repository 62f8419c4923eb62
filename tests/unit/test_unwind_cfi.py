"""The CFI decoder on hand-assembled .eh_frame/.debug_frame bytes: each instruction and
encoding gives the rows the unwind spec says, and malformed bytes cost the entry, not the
section (and never raise)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.unwind_synth import (
    NOP,
    RA,
    RBP,
    RBX,
    REMEMBER,
    RESTORE_STATE,
    RSP,
    SIGNAL_EXPR,
    Cie,
    Fde,
    Raw,
    advance,
    cfa_expression,
    def_cfa,
    def_cfa_offset,
    def_cfa_register,
    eh_frame,
    offset,
    plt_expr,
    reg_expression,
    restore,
    sleb,
    uleb,
)
from unwind import cfi
from unwind.build import layout, uncovered
from unwind.cfi import Bases, SectionDecoder
from unwind.table import (
    CFA_END,
    CFA_PLT,
    CFA_RBP,
    CFA_RSP,
    CFA_SIGNAL,
    CFA_UNDEFINED,
    CFA_UNSUPPORTED,
    RBP_AT_CFA,
    RBP_SAME,
    RBP_UNDEFINED,
    UnwindTable,
)

VADDR = 0x10000
F = 0x1000  # the function under test starts here


NO_BASES = Bases()


def decode(entries, *, eh=True, bases=NO_BASES):
    lay = eh_frame(entries, VADDR, eh=eh)
    return SectionDecoder(lay.data, VADDR, eh=eh, bases=bases).decode()


def table(entries, **kw) -> UnwindTable:
    res = decode(entries, **kw)
    assert res.bad_entries == 0, res.first_problem
    return UnwindTable.from_tuples(None, layout(res.fdes))


def rules(t: UnwindTable) -> list[tuple]:
    return [(r.pc, r.cfa_rule, r.cfa_offset, r.rbp_rule, r.rbp_offset) for r in t]


def one(instructions: bytes, length: int = 0x100, cie: Cie | None = None) -> UnwindTable:
    return table([cie or Cie(), Fde(F, length, instructions)])


def test_leb128_round_trip():
    for v in (0, 1, 63, 64, 127, 128, 624485, 1 << 40):
        assert cfi.uleb(uleb(v), 0) == (v, len(uleb(v)))
    for v in (0, 1, -1, 63, 64, -64, -65, -8, 160, -123456):
        assert cfi.sleb(sleb(v), 0) == (v, len(sleb(v)))


def test_typical_prologue_epilogue_with_remember_restore_state():
    # push rbx; push rbp; sub; ... ; (remember) pop; pop; ret; (restore) more body
    t = one(advance(1) + def_cfa_offset(16) + offset(RBX, 2)
            + advance(1) + def_cfa_offset(24) + offset(RBP, 3)
            + advance(4) + def_cfa_offset(64)
            + advance(0x20) + REMEMBER + def_cfa_offset(16)
            + advance(1) + def_cfa_offset(8) + restore(RBP)
            + advance(1) + RESTORE_STATE, length=0x40)
    assert rules(t) == [
        (F, CFA_RSP, 8, RBP_SAME, 0),
        (F + 1, CFA_RSP, 16, RBP_SAME, 0),
        (F + 2, CFA_RSP, 24, RBP_AT_CFA, -24),
        (F + 6, CFA_RSP, 64, RBP_AT_CFA, -24),
        (F + 0x26, CFA_RSP, 16, RBP_AT_CFA, -24),
        (F + 0x27, CFA_RSP, 8, RBP_SAME, 0),
        # restore_state brings back the CFA as well as the registers (as GCC relies on)
        (F + 0x28, CFA_RSP, 64, RBP_AT_CFA, -24),
        (F + 0x40, CFA_UNDEFINED, 0, RBP_SAME, 0),
    ]


def test_frame_pointer_function_and_every_advance_width():
    t = one(advance(1) + def_cfa_offset(16) + offset(RBP, 2)
            + advance(3) + def_cfa_register(RBP)
            + advance(0x80) + NOP + advance(0x1234) + def_cfa(RSP, 8)
            + advance(0x12345) + def_cfa_offset(16), length=0x20000)
    assert rules(t) == [
        (F, CFA_RSP, 8, RBP_SAME, 0),
        (F + 1, CFA_RSP, 16, RBP_AT_CFA, -16),
        (F + 4, CFA_RBP, 16, RBP_AT_CFA, -16),        # advance_loc
        (F + 0x84 + 0x1234, CFA_RSP, 8, RBP_AT_CFA, -16),  # advance_loc1, advance_loc2
        (F + 0x84 + 0x1234 + 0x12345, CFA_RSP, 16, RBP_AT_CFA, -16),  # advance_loc4
        (F + 0x20000, CFA_UNDEFINED, 0, RBP_SAME, 0),
    ]


def test_extended_and_signed_forms():
    t = one(b"\x12" + uleb(RSP) + sleb(-3)               # def_cfa_sf: 7, -3 * -8 = 24
            + b"\x05" + uleb(RBP) + uleb(4)               # offset_extended: -32
            + advance(1) + b"\x13" + sleb(-4)             # def_cfa_offset_sf: 32
            + b"\x11" + uleb(RBP) + sleb(-5)              # offset_extended_sf: +40
            + advance(1) + b"\x2f" + uleb(RBP) + uleb(2)  # GNU_negative_offset_extended: +16
            + b"\x2e" + uleb(48)                          # GNU_args_size: no effect
            + advance(1) + b"\x06" + uleb(RBP),           # restore_extended: the CIE's (none)
            length=4)
    assert rules(t) == [
        (F, CFA_RSP, 24, RBP_AT_CFA, -32),
        (F + 1, CFA_RSP, 32, RBP_AT_CFA, 40),
        (F + 2, CFA_RSP, 32, RBP_AT_CFA, 16),
        (F + 3, CFA_RSP, 32, RBP_SAME, 0),
        (F + 4, CFA_UNDEFINED, 0, RBP_SAME, 0),
    ]


def test_rbp_rules_other_than_saved_at_cfa():
    t = one(advance(1) + b"\x07" + uleb(RBP)                 # undefined
            + advance(1) + b"\x08" + uleb(RBP)               # same_value
            + advance(1) + b"\x09" + uleb(RBP) + uleb(RBX)   # register: in rbx
            + advance(1) + reg_expression(RBP, b"\x77\x10")  # expression
            + advance(1) + offset(RBP, 2)
            + advance(1) + reg_expression(RBP, b"\x77\x10", val=True)  # val_expression
            + advance(1) + b"\x14" + uleb(RBP) + uleb(2),   # val_offset
            length=8)
    assert [(r[0] - F, r[3], r[4]) for r in rules(t)] == [
        (0, RBP_SAME, 0), (1, RBP_UNDEFINED, 0), (2, RBP_SAME, 0), (3, RBP_UNDEFINED, 0),
        (5, RBP_AT_CFA, -16), (6, RBP_UNDEFINED, 0), (8, RBP_SAME, 0)]


def test_return_address_rules():
    t = one(advance(1) + b"\x07" + uleb(RA)          # undefined: outermost frame
            + advance(1) + offset(RA, 1)             # back to CFA - 8
            + advance(1) + b"\x09" + uleb(RA) + uleb(RBX)   # in a register: not ours
            + advance(1) + offset(RA, 2)             # at CFA - 16: not the psABI's
            + advance(1) + restore(RA), length=6)
    assert [(r.pc - F, r.cfa_rule) for r in t] == [
        (0, CFA_RSP), (1, CFA_END), (2, CFA_RSP), (3, CFA_UNSUPPORTED), (5, CFA_RSP),
        (6, CFA_UNDEFINED)]


def test_cfa_in_another_register_is_unsupported():
    t = one(advance(2) + def_cfa(RBX, 56), length=4)
    assert [(r.pc - F, r.cfa_rule, r.cfa_offset) for r in t] == [
        (0, CFA_RSP, 8), (2, CFA_UNSUPPORTED, 0), (4, CFA_UNDEFINED, 0)]


def test_plt_expression():
    t = one(def_cfa_offset(16) + advance(6) + def_cfa_offset(24)
            + advance(10) + cfa_expression(plt_expr(8, 11)), length=0x40)
    assert rules(t) == [
        (F, CFA_RSP, 16, RBP_SAME, 0), (F + 6, CFA_RSP, 24, RBP_SAME, 0),
        (F + 16, CFA_PLT, 8, RBP_SAME, 11), (F + 0x40, CFA_UNDEFINED, 0, RBP_SAME, 0)]


def test_other_expressions_are_unsupported():
    near_plt = plt_expr(8, 11)[:-1] + b"\x1c"  # ends in DW_OP_minus
    for expr in (near_plt, b"\x77\x08\x06\x23\x08", b"\x70\x00"):
        t = one(cfa_expression(expr), length=4)
        assert [r.cfa_rule for r in t] == [CFA_UNSUPPORTED, CFA_UNDEFINED], expr.hex()


def test_signal_trampoline_needs_the_s_augmentation():
    ins = cfa_expression(SIGNAL_EXPR) + reg_expression(RBP, b"\x77" + sleb(120)) \
        + reg_expression(RA, b"\x77" + sleb(168))
    sig = table([Cie(augmentation="zRS", instructions=b""), Fde(F - 1, 11, ins)])
    assert rules(sig) == [(F - 1, CFA_SIGNAL, 0, RBP_SAME, 0), (F + 10, CFA_UNDEFINED, 0,
                                                                 RBP_SAME, 0)]
    plain = table([Cie(instructions=b""), Fde(F - 1, 11, ins)])
    assert [r.cfa_rule for r in plain] == [CFA_UNSUPPORTED, CFA_UNDEFINED]


def test_fde_without_instructions_has_the_cie_rules():
    t = table([Cie(), Fde(F, 0x10), Fde(F + 0x20, 0x10)])
    assert rules(t) == [(F, CFA_RSP, 8, RBP_SAME, 0), (F + 0x10, CFA_UNDEFINED, 0, RBP_SAME, 0),
                        (F + 0x20, CFA_RSP, 8, RBP_SAME, 0),
                        (F + 0x30, CFA_UNDEFINED, 0, RBP_SAME, 0)]


def test_layout_adjacent_overlapping_unsorted_and_empty_fdes():
    t = table([Cie(),
               Fde(F + 0x100, 0x10, def_cfa_offset(16)),          # listed out of order
               Fde(F, 0x100, advance(4) + def_cfa_offset(16)),   # ends where the next starts
               Fde(F + 0x200, 0),                                 # empty: ignored
               Fde(F + 0x200, 0x80, advance(0x70) + def_cfa_offset(32)),
               Fde(F + 0x240, 0x10, def_cfa_offset(48))])         # inside the previous one
    assert rules(t) == [
        (F, CFA_RSP, 8, RBP_SAME, 0),
        (F + 4, CFA_RSP, 16, RBP_SAME, 0),  # F+0x100's first row merged: the same rule
        (F + 0x110, CFA_UNDEFINED, 0, RBP_SAME, 0),
        (F + 0x200, CFA_RSP, 8, RBP_SAME, 0),
        (F + 0x240, CFA_RSP, 48, RBP_SAME, 0),  # the later start wins
        (F + 0x250, CFA_UNDEFINED, 0, RBP_SAME, 0)]


def test_rows_past_the_fde_end_are_dropped():
    t = one(advance(8) + def_cfa_offset(16) + advance(8) + def_cfa_offset(24), length=8)
    assert rules(t) == [(F, CFA_RSP, 8, RBP_SAME, 0), (F + 8, CFA_UNDEFINED, 0, RBP_SAME, 0)]


def test_advance_by_zero_keeps_the_last_rule_for_that_pc():
    t = one(advance(0) + def_cfa_offset(16) + advance(2) + def_cfa_offset(24), length=4)
    assert rules(t) == [(F, CFA_RSP, 16, RBP_SAME, 0), (F + 2, CFA_RSP, 24, RBP_SAME, 0),
                        (F + 4, CFA_UNDEFINED, 0, RBP_SAME, 0)]


def test_set_loc_uses_the_fde_encoding():
    set_loc = b"\x01" + struct.pack("<I", F + 0x30)  # udata4, absolute
    t = table([Cie(fde_enc=0x03), Fde(F, 0x40, def_cfa_offset(16) + set_loc + def_cfa_offset(8),
                                      raw_pc=struct.pack("<II", F, 0x40))])
    assert rules(t) == [(F, CFA_RSP, 16, RBP_SAME, 0), (F + 0x30, CFA_RSP, 8, RBP_SAME, 0),
                        (F + 0x40, CFA_UNDEFINED, 0, RBP_SAME, 0)]


def test_pointer_encodings_and_augmentations():
    got = 0x50000
    entries = [
        Cie(fde_enc=0x03),                                          # udata4 absolute
        Fde(F, 0x10, raw_pc=struct.pack("<II", F, 0x10)),
        Cie(fde_enc=0x3B),                                          # datarel | sdata4
        Fde(F + 0x10, 0x10, cie=2, raw_pc=struct.pack("<iI", F + 0x10 - got, 0x10)),
        Cie(fde_enc=0x04),                                          # udata8
        Fde(F + 0x20, 0x10, cie=4, raw_pc=struct.pack("<QQ", F + 0x20, 0x10)),
        Cie(fde_enc=0x01),                                          # uleb128
        Fde(F + 0x30, 0x10, cie=6, raw_pc=uleb(F + 0x30) + uleb(0x10)),
        # personality through the GOT (indirect | pcrel | sdata4), LSDA pointer in FDE data
        Cie(augmentation="zPLR", personality=b"\x9b" + struct.pack("<i", -0x100)),
        Fde(F + 0x40, 0x10, def_cfa_offset(32), cie=8, aug_data=struct.pack("<i", 0x44)),
        Cie(version=3, augmentation="zR"),                           # ra as uleb
        Fde(F + 0x50, 0x10, def_cfa_offset(48), cie=10),
        Cie(extended_length=True),                                   # 64-bit DWARF lengths
        Fde(F + 0x60, 0x10, def_cfa_offset(64), cie=12, extended_length=True),
    ]
    t = table(entries, bases=Bases(text=None, data=got))
    assert [(r.pc, r.cfa_rule, r.cfa_offset) for r in t] == [
        (F, CFA_RSP, 8), (F + 0x40, CFA_RSP, 32), (F + 0x50, CFA_RSP, 48),
        (F + 0x60, CFA_RSP, 64), (F + 0x70, CFA_UNDEFINED, 0)]


def test_debug_frame_absolute_addresses_and_version_4():
    entries = [Cie(augmentation="", version=3), Fde(F, 0x10, def_cfa_offset(16)),
               Cie(augmentation="", version=4), Fde(F + 0x10, 0x10, def_cfa_offset(24), cie=2)]
    t = table(entries, eh=False)
    assert [(r.pc, r.cfa_offset) for r in t] == [(F, 16), (F + 0x10, 24), (F + 0x20, 0)]


def test_debug_frame_fills_only_what_eh_frame_leaves_uncovered():
    eh = decode([Cie(), Fde(F, 0x10, def_cfa_offset(16))]).fdes
    dbg = decode([Cie(augmentation=""), Fde(F + 8, 0x10, def_cfa_offset(99)),
                  Fde(F + 0x20, 0x10, def_cfa_offset(24))], eh=False).fdes
    t = UnwindTable.from_tuples(None, layout(eh + uncovered(dbg, eh)))
    assert [(r.pc, r.cfa_offset) for r in t] == [(F, 16), (F + 0x10, 0), (F + 0x20, 24),
                                                 (F + 0x30, 0)]


def test_unknown_opcode_makes_the_rest_of_the_fde_unsupported():
    res = decode([Cie(), Fde(F, 0x10, def_cfa_offset(16) + advance(4) + b"\x2d"
                             + def_cfa_offset(24)), Fde(F + 0x10, 0x10)])
    assert res.fdes[0].unsupported_opcode == 0x2D
    t = UnwindTable.from_tuples(None, layout(res.fdes))
    assert [(r.pc - F, r.cfa_rule) for r in t] == [
        (0, CFA_RSP), (4, CFA_UNSUPPORTED), (0x10, CFA_RSP), (0x20, CFA_UNDEFINED)]


def test_malformed_entries_are_skipped_not_fatal():
    good = Fde(F, 0x10, def_cfa_offset(16))
    cases = {  # what: (entries between two good FDEs, entries skipped)
        "instructions run past the entry": ([Fde(F + 0x10, 0x10, b"\x0c\x07")], 1),
        "expression longer than the entry": ([Fde(F + 0x10, 0x10, b"\x0f\x40\x77")], 1),
        "indirect FDE address (the CIE and its FDE)":
            ([Cie(fde_enc=0x9B), Fde(F + 0x10, 0x10, cie=2)], 2),
    }
    for what, (bad, skipped) in cases.items():
        res = decode([Cie(), good, *bad, Fde(F + 0x40, 0x10, def_cfa_offset(24))])
        assert res.bad_entries == skipped, what
        assert [f.start for f in res.fdes] == [F, F + 0x40], what


def test_unknown_augmentation_letters():
    # after R: skipped by the augmentation length; before R: R's byte cannot be found
    res = decode([Cie(augmentation="zRX"), Fde(F, 0x10, def_cfa_offset(16)),
                  Cie(augmentation="zXR"), Fde(F + 0x10, 0x10, cie=2)])
    assert [f.start for f in res.fdes] == [F] and res.bad_entries == 2


def test_bad_cie_pointer_and_unknown_augmentation():
    lay = eh_frame([Cie(), Fde(F, 0x10), Cie(augmentation="eh"), Fde(F + 0x10, 0x10, cie=2)],
                   VADDR)
    # point the first FDE's CIE pointer far outside the section
    data = bytearray(lay.data)
    struct.pack_into("<I", data, lay.offsets[1] + 4, 0x7FFFFFF0)
    res = SectionDecoder(bytes(data), VADDR, eh=True).decode()
    assert res.fdes == [] and res.bad_entries == 3  # the FDE, the "eh" CIE and its FDE


def test_length_past_the_section_stops_the_walk():
    lay = eh_frame([Cie(), Fde(F, 0x10), Raw(struct.pack("<I", 0x1000) + b"\0" * 8)], VADDR)
    res = SectionDecoder(lay.data, VADDR, eh=True).decode()
    assert [f.start for f in res.fdes] == [F] and res.bad_entries == 1
    assert "past the section" in (res.first_problem or "")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 399), st.booleans())
def test_random_bytes_never_raise_and_tables_stay_sorted(noise, where, eh):
    """Hostile CFI (a recording names the objects): damaged bytes over a valid section."""
    lay = eh_frame([Cie(), Fde(F, 0x100, advance(3) + def_cfa_offset(16)),
                    Cie(augmentation="zPLR", personality=b"\x9b\0\0\0\0"),
                    Fde(F + 0x100, 0x100, def_cfa_offset(32), cie=2, aug_data=b"\0" * 4)],
                   VADDR, eh=eh)
    data = lay.data[:where] + noise + lay.data[where + len(noise):]
    res = SectionDecoder(data, VADDR, eh=eh, bases=Bases(0, 0)).decode()
    t = UnwindTable.from_tuples(None, layout(res.fdes))
    t.validate()
