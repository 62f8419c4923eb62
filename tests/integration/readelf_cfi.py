"""GNU readelf's CFI dumps, turned into the unwind spec's rule model (the differential test's
reference). `--debug-dump=frames-interp` gives each FDE's table (LOC CFA rbx rbp ... ra);
`--debug-dump=frames` gives the instructions, for what frames-interp prints only as `exp`
(which expression: the PLT's or the signal trampoline's) and for explicit DW_CFA_undefined
of rbp (frames-interp prints `u` both for that and for "no rule yet").
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from unwind.table import (
    CFA_END,
    CFA_PLT,
    CFA_RBP,
    CFA_RSP,
    CFA_SIGNAL,
    CFA_UNSUPPORTED,
    RBP_AT_CFA,
    RBP_SAME,
    RBP_UNDEFINED,
)

SECTION = re.compile(r"^Contents of the (\.\S+) section")
ENTRY = re.compile(r"^([0-9a-f]{8,16}) [0-9a-f]{8,16} [0-9a-f]{8,16} (CIE|FDE)(.*)$")
FDE_INFO = re.compile(r"cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)")
CIE_AUG = re.compile(r'^ "([^"]*)"')
ROW = re.compile(r"^([0-9a-f]{16}) (.*)$")
TOKEN = re.compile(r"\S+(?: \([^)]*\))?")  # "r9 (r9)" is one column value
CFA_EXPR = re.compile(r"DW_CFA_def_cfa_expression \((.*)\)$")
PLT_EXPR = re.compile(r"^DW_OP_breg7 \(rsp\): (-?\d+); DW_OP_breg16 \(rip\): 0; DW_OP_lit15; "
                      r"DW_OP_and; DW_OP_lit(\d+); DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus$")
SIGNAL_EXPR = "DW_OP_breg7 (rsp): 160; DW_OP_deref"

Expected = tuple[int, int, int, int]  # cfa_rule, cfa_offset, rbp_rule, rbp_offset


@dataclass
class Entry:
    section: str
    offset: int
    kind: str  # CIE or FDE
    cie: int = 0
    start: int = 0
    end: int = 0
    augmentation: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)


def _dump(path: str, what: str) -> str:
    # readelf 2.40 exits 1 on Debian's libc and ld.so with a complete dump and no message
    # (it fails to follow their .gnu_debuglink), so its output is checked, not its status
    out = subprocess.run(["readelf", "-W", f"--debug-dump={what}", path],
                         capture_output=True, text=True).stdout
    assert "Contents of the " in out, f"readelf printed no CFI for {path}"
    return out


def parse(path: str) -> list[Entry]:
    entries: dict[tuple[str, int], Entry] = {}
    order: list[Entry] = []
    section = ""
    cur: Entry | None = None
    for line in _dump(path, "frames-interp").splitlines():
        m = SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        m = ENTRY.match(line)
        if m:
            cur = Entry(section, int(m.group(1), 16), m.group(2))
            if cur.kind == "FDE":
                f = FDE_INFO.search(m.group(3))
                assert f, line
                cur.cie, cur.start, cur.end = (int(g, 16) for g in f.groups())
            else:
                a = CIE_AUG.search(m.group(3))
                cur.augmentation = a.group(1) if a else ""
            entries[(section, cur.offset)] = cur
            order.append(cur)
            continue
        if cur is None:
            continue
        if line.startswith("   LOC"):
            cur.columns = line.split()[1:]
            continue
        m = ROW.match(line)
        if m and cur.columns:
            values = TOKEN.findall(m.group(2))
            cur.rows.append((int(m.group(1), 16), dict(zip(cur.columns, values, strict=True))))
    section, cur = "", None
    for line in _dump(path, "frames").splitlines():
        m = SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        m = ENTRY.match(line)
        if m:
            cur = entries.get((section, int(m.group(1), 16)))
            continue
        if cur is not None and line.startswith("  DW_CFA_"):
            cur.instructions.append(line.strip())
    return order


def cies_of(entries: list[Entry]) -> dict[tuple[str, int], Entry]:
    return {(e.section, e.offset): e for e in entries if e.kind == "CIE"}


def expected_rows(fde: Entry, cie: Entry) -> list[tuple[int, Expected, bool]]:
    """(loc, expected rule, rbp_may_be_undefined) for each row readelf prints for the FDE
    (the last one wins for a repeated loc); an FDE without a table has the CIE's rules."""
    exprs = {CFA_EXPR.match(i).group(1) for i in fde.instructions if CFA_EXPR.match(i)}
    assert len(exprs) <= 1, (fde.offset, exprs)
    expr = exprs.pop() if exprs else None
    rbp_undef = any(i.startswith("DW_CFA_undefined: r6 ")
                    for i in fde.instructions + cie.instructions)
    rows = fde.rows or [(fde.start, cie.rows[-1][1] if cie.rows else {})]
    by_loc: dict[int, Expected] = {}
    for loc, cols in rows:
        by_loc[loc] = convert(cols, expr, "S" in cie.augmentation)
    return [(loc, exp, rbp_undef) for loc, exp in by_loc.items()]


def convert(cols: dict[str, str], expr: str | None, signal: bool) -> Expected:
    """readelf's columns -> the spec's (cfa_rule, cfa_offset, rbp_rule, rbp_offset)."""
    cfa, ra, rbp = cols.get("CFA", ""), cols.get("ra"), cols.get("rbp", "u")
    if cfa == "exp" and signal and expr == SIGNAL_EXPR:
        return (CFA_SIGNAL, 0, RBP_SAME, 0)
    if ra == "u":
        return (CFA_END, 0, RBP_SAME, 0)
    if ra != "c-8":
        return (CFA_UNSUPPORTED, 0, RBP_SAME, 0)
    if cfa == "exp":
        m = PLT_EXPR.match(expr or "")
        if m:
            return (CFA_PLT, int(m.group(1)), RBP_SAME, int(m.group(2)))
        return (CFA_UNSUPPORTED, 0, RBP_SAME, 0)
    m = re.fullmatch(r"(rsp|rbp)([+-]\d+)", cfa)
    if not m:
        return (CFA_UNSUPPORTED, 0, RBP_SAME, 0)
    rule = CFA_RSP if m.group(1) == "rsp" else CFA_RBP
    off = int(m.group(2))
    if rbp in ("u", "s"):
        return (rule, off, RBP_SAME, 0)
    r = re.fullmatch(r"c([+-]\d+)", rbp)
    if r and -0x8000 <= int(r.group(1)) <= 0x7FFF:
        return (rule, off, RBP_AT_CFA, int(r.group(1)))
    return (rule, off, RBP_UNDEFINED, 0)
