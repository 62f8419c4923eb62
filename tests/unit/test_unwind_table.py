"""The table's row format, lookup and file format (the contract with the BPF unwinder)."""

from __future__ import annotations

import struct

import pytest

from unwind.table import (
    BUILDER_VERSION,
    CFA_PLT,
    CFA_RBP,
    CFA_RSP,
    CFA_UNDEFINED,
    FORMAT_VERSION,
    HEADER,
    MAGIC,
    RBP_AT_CFA,
    RBP_SAME,
    ROW,
    TableFormatError,
    UnwindTable,
)

ROWS = [(0x1000, 8, 0, CFA_RSP, RBP_SAME), (0x1001, 16, -16, CFA_RSP, RBP_AT_CFA),
        (0x1004, 16, -16, CFA_RBP, RBP_AT_CFA), (0x1040, 0, 0, CFA_UNDEFINED, RBP_SAME),
        (0x2000, 8, 11, CFA_PLT, RBP_SAME)]


def test_row_layout_is_16_little_endian_bytes():
    t = UnwindTable.from_tuples("abcd", ROWS)
    assert ROW.size == 16 and len(t.rows) == 16 * len(ROWS) and t.count == 5
    assert t.rows[16:32] == struct.pack("<Q", 0x1001) + struct.pack("<i", 16) + \
        struct.pack("<h", -16) + bytes([CFA_RSP, RBP_AT_CFA])


def test_lookup_is_the_last_row_at_or_before_pc():
    t = UnwindTable.from_tuples(None, ROWS)
    assert t.lookup(0xFFF) is None
    assert t.lookup(0x1000).cfa_offset == 8
    assert t.lookup(0x1003).cfa_offset == 16 and t.lookup(0x1003).cfa_rule == CFA_RSP
    assert t.lookup(0x103F).cfa_rule == CFA_RBP
    assert t.lookup(0x1040).cfa_rule == CFA_UNDEFINED
    assert t.lookup(0x1FFF).cfa_rule == CFA_UNDEFINED
    assert t.lookup(1 << 63).cfa_rule == CFA_PLT and t.lookup(1 << 63).rbp_offset == 11
    assert [r.pc for r in t] == [r[0] for r in ROWS]
    assert t.rule_counts()["rsp"] == 2


def test_file_round_trip_keeps_build_id_and_rows():
    t = UnwindTable.from_tuples("93ac61ec5a8eb1396f9fbd350e3169a558528a40", ROWS)
    back = UnwindTable.from_bytes(t.to_bytes())
    assert back.build_id == t.build_id and back.rows == t.rows
    anon = UnwindTable.from_bytes(UnwindTable.from_tuples(None, ROWS).to_bytes())
    assert anon.build_id is None and anon.count == 5


def _file(version=FORMAT_VERSION, builder=BUILDER_VERSION, rows=ROWS, count=None,
          magic=MAGIC, bid=b"\xab\xcd") -> bytes:
    body = UnwindTable.from_tuples(None, rows).rows
    return HEADER.pack(magic, version, len(bid), builder,
                       len(rows) if count is None else count) + bid + body


@pytest.mark.parametrize("data,why", [
    (b"", "empty"),
    (_file()[:10], "shorter than the header"),
    (_file(magic=b"NOTTABLE"), "magic"),
    (_file(version=FORMAT_VERSION + 1), "newer format"),
    (_file(builder=BUILDER_VERSION - 1), "older builder"),
    (_file(count=6), "count says more rows than there are"),
    (_file()[:-1], "truncated row"),
    (_file() + b"\0" * 16, "trailing bytes"),
    (_file(rows=[ROWS[1], ROWS[0]]), "rows out of order"),
    (_file(rows=[ROWS[0], ROWS[0]]), "two rows at one pc"),
    (_file(rows=[(0x1000, 8, 0, 7, 0)]), "cfa rule out of range"),
    (_file(rows=[(0x1000, 8, 0, 1, 3)]), "rbp rule out of range"),
    (_file(bid=b"\x01" * 65), "build ID too long"),
])
def test_damaged_files_are_rejected(data, why):
    with pytest.raises(TableFormatError):
        UnwindTable.from_bytes(data)
