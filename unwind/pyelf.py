"""A second CFI decoder over pyelftools' `elftools.dwarf.callframe`, for cross-checking the
hand-written one (unwind/cfi.py); too slow for the recorder (~4.5 s per MB of .eh_frame).

It plugs into build_table(decoder=...), so everything after decoding (layout, merging,
.debug_frame filling) is shared and a difference between the two is a decoding difference.
Two pyelftools 0.33 gaps are bridged: it rejects DW_CFA_GNU_args_size (dropped here: it only
informs the EH personality) and does not know DW_CFA_GNU_negative_offset_extended.
"""

from __future__ import annotations

import io
from typing import Any

from elftools.common.exceptions import ELFError as PyElfError
from elftools.dwarf.callframe import CIE, FDE, CallFrameInfo, RegisterRule
from elftools.dwarf.structs import DWARFStructs

from unwind.cfi import (
    CFA_EXP_OTHER,
    CFA_REG,
    K_NONE,
    K_OFFSET,
    K_OTHER,
    K_SAME,
    K_UNDEF,
    REG_RBP,
    Bases,
    FdeRows,
    RowTuple,
    SectionResult,
    State,
    classify_cfa_expression,
    push_row,
    to_row,
)
from unwind.table import CFA_UNSUPPORTED, RBP_SAME

DW_CFA_GNU_args_size = 0x2E
_KINDS = {RegisterRule.UNDEFINED: K_UNDEF, RegisterRule.SAME_VALUE: K_SAME,
          RegisterRule.OFFSET: K_OFFSET}


def _reg(line: dict[int | str, Any], reg: int) -> tuple[int, int]:
    rule = line.get(reg)
    if rule is None:
        return K_NONE, 0
    kind = _KINDS.get(rule.type, K_OTHER)
    return kind, rule.arg if kind == K_OFFSET else 0


def _state(line: dict[int | str, Any], ra_reg: int, signal: bool) -> State:
    cfa = line["cfa"]
    if cfa.expr is not None:
        kind, off, t = classify_cfa_expression(bytes(cfa.expr), signal)
        cfa_reg = -1
    elif cfa.reg is None:
        kind, cfa_reg, off, t = CFA_EXP_OTHER, -1, 0, 0
    else:
        kind, cfa_reg, off, t = CFA_REG, cfa.reg, cfa.offset, 0
    rbp_kind, rbp_off = _reg(line, REG_RBP)
    ra_kind, ra_off = _reg(line, ra_reg)
    return (kind, cfa_reg, off, t, rbp_kind, rbp_off, ra_kind, ra_off)


def decode(data: bytes, vaddr: int, eh: bool, bases: Bases) -> SectionResult:
    structs = DWARFStructs(little_endian=True, dwarf_format=32, address_size=8)
    cfi = CallFrameInfo(io.BytesIO(data), len(data), vaddr, structs, for_eh_frame=eh)
    result = SectionResult([])
    for entry in cfi.get_entries():
        if not isinstance(entry, FDE):
            continue
        start, length = entry["initial_location"], entry["address_range"]
        if length == 0:
            continue
        cie = entry.cie
        assert isinstance(cie, CIE)
        signal = b"S" in bytes(cie["augmentation"])
        ra_reg = cie["return_address_register"]
        entry.instructions = [i for i in entry.instructions if i.opcode != DW_CFA_GNU_args_size]
        rows: list[RowTuple] = []
        try:
            table = entry.get_decoded().table
        except (PyElfError, ValueError, KeyError) as exc:
            result.bad_entries += 1
            result.first_problem = result.first_problem or f"FDE at {start:#x}: {exc}"
            table = []
            rows.append((start, 0, 0, CFA_UNSUPPORTED, RBP_SAME))
        for line in table:
            pc = line["pc"]
            if pc >= start + length:
                break
            push_row(rows, to_row(pc, _state(line, ra_reg, signal)),
                     rows[-1] if rows else None)
        if not rows:  # no instructions: the CIE's rules
            cie_table = cie.get_decoded().table
            line = dict(cie_table[-1]) if cie_table else {"cfa": None}
            rows.append(to_row(start, _state(line, ra_reg, signal)) if cie_table else
                        (start, 0, 0, CFA_UNSUPPORTED, RBP_SAME))
        result.fdes.append(FdeRows(start, start + length, rows))
    return result
