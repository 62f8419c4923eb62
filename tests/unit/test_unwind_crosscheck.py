"""The hand-written CFI decoder against pyelftools' (unwind/pyelf.py), through the same table
layout: byte-identical tables on real objects and on hand-assembled CFI."""

from __future__ import annotations

import os

import pytest

from tests.helpers.unwind_synth import (
    RA,
    RBP,
    REMEMBER,
    RESTORE_STATE,
    RSP,
    SIGNAL_EXPR,
    Cie,
    Fde,
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
)
from unwind import pyelf
from unwind.build import build_table, layout, object_info
from unwind.cfi import Bases, SectionDecoder
from unwind.table import UnwindTable

OBJECTS = ["/lib64/ld-linux-x86-64.so.2", "/usr/bin/sort", "/lib/x86_64-linux-gnu/liblzma.so.5",
           "/lib/x86_64-linux-gnu/libc.so.6"]


@pytest.mark.parametrize("path", OBJECTS)
def test_real_objects_give_identical_tables(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} not installed")
    fd = os.open(path, os.O_RDONLY)
    try:
        info = object_info(fd)
        fast = build_table(fd, info)
        slow = build_table(fd, info, decoder=pyelf.decode)
    finally:
        os.close(fd)
    assert isinstance(fast, UnwindTable) and isinstance(slow, UnwindTable)
    assert fast.count > 100
    assert fast.rows == slow.rows


def test_hand_assembled_cfi_gives_identical_tables():
    v = 0x4000
    entries = [
        Cie(),
        Fde(0x1000, 0x40, advance(1) + def_cfa_offset(16) + offset(RBP, 2) + advance(3)
            + def_cfa_register(RBP) + advance(0x30) + REMEMBER + def_cfa(RSP, 8)
            + restore(RBP) + advance(1) + RESTORE_STATE),
        Fde(0x1040, 0x30, def_cfa_offset(16) + advance(6) + def_cfa_offset(24) + advance(10)
            + cfa_expression(plt_expr(8, 11))),
        Cie(augmentation="zRS", instructions=b""),
        # as glibc's __restore_rt (pyelftools drops a row whose only rule is the CFA's
        # expression, so the registers' expressions are needed here as well)
        Fde(0x10FF, 11, cfa_expression(SIGNAL_EXPR) + reg_expression(RBP, b"\x77" + sleb(120))
            + reg_expression(RA, b"\x77" + sleb(168)), cie=3),
        Fde(0x2000, 0x300, advance(0x200) + def_cfa_offset(0x1234)),
    ]
    data = eh_frame(entries, v).data
    fast = SectionDecoder(data, v, eh=True).decode()
    slow = pyelf.decode(data, v, True, Bases())
    assert fast.bad_entries == slow.bad_entries == 0
    a = UnwindTable.from_tuples(None, layout(fast.fdes))
    b = UnwindTable.from_tuples(None, layout(slow.fdes))
    assert a.count == 14 and a.rows == b.rows
