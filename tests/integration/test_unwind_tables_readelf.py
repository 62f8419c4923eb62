"""Differential test: our unwind tables agree with GNU readelf's interpretation of the same CFI
(`readelf --debug-dump=frames-interp`), row by row, on Debian's own objects and the fixtures.

For every row readelf prints, our table's lookup at that LOC gives the same rule (CFA rule and
offset, rbp rule and offset; CFA_PLT with N and T; CFA_SIGNAL; CFA_END where ra is `u`), every
FDE's end where no FDE starts is CFA_UNDEFINED, and every row of ours starts at a LOC readelf
prints or at an FDE's end (so the table holds nothing readelf does not).
"""

from __future__ import annotations

import bisect
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from recording.elf import elf_info_of_path
from tests.integration.readelf_cfi import cies_of, expected_rows, parse
from unwind.build import build_from_fd
from unwind.table import (
    CFA_NAMES,
    CFA_PLT,
    CFA_RSP,
    CFA_SIGNAL,
    CFA_UNDEFINED,
    RBP_SAME,
    RBP_UNDEFINED,
    UnwindTable,
)

pytestmark = pytest.mark.skipif(shutil.which("readelf") is None, reason="needs GNU readelf")

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
SYSTEM = [LIBC, "/lib64/ld-linux-x86-64.so.2", "/usr/bin/python3.11", "/usr/bin/sort",
          "/lib/x86_64-linux-gnu/liblzma.so.5", "/usr/bin/xz", "/usr/bin/gzip"]


def build(path: str) -> UnwindTable:
    fd = os.open(path, os.O_RDONLY)
    try:
        got = build_from_fd(fd)
    finally:
        os.close(fd)
    assert isinstance(got, UnwindTable), got
    return got


def compare(path: str) -> Counter:
    """Assert agreement; return the count of readelf rows per rule (for the report)."""
    table = build(path)
    entries = parse(path)
    cies = cies_of(entries)
    fdes = [e for e in entries if e.kind == "FDE" and e.end > e.start]
    eh = {(f.start, f.end) for f in fdes if f.section == ".eh_frame"}
    if eh:  # .debug_frame FDEs count only where .eh_frame leaves a gap (the spec)
        fdes = [f for f in fdes if f.section == ".eh_frame" or not any(
            s < f.end and f.start < e for s, e in eh)]
    fdes.sort(key=lambda f: (f.start, f.end))
    starts = [f.start for f in fdes]
    reach = []  # reach[i]: the furthest end of fdes[:i + 1]
    for f in fdes:
        reach.append(max(f.end, reach[-1]) if reach else f.end)
    allowed = set()
    per_rule: Counter = Counter()
    mismatches = []
    for i, f in enumerate(fdes):
        nxt = fdes[i + 1].start if i + 1 < len(fdes) else None
        limit = f.end if nxt is None else min(f.end, nxt)
        if limit <= f.start:
            continue
        cie = cies[(f.section, f.cie)]
        for loc, want, rbp_may_be_undefined in expected_rows(f, cie):
            if not f.start <= loc < limit:
                continue
            allowed.add(loc)
            row = table.lookup(loc)
            got = (row.cfa_rule, row.cfa_offset, row.rbp_rule, row.rbp_offset) if row else None
            per_rule[CFA_NAMES[want[0]]] += 1
            if got != want and not (rbp_may_be_undefined and got is not None and got[:2] ==
                                    want[:2] and got[2] == RBP_UNDEFINED):
                mismatches.append(f"{path} FDE {f.offset:#x} at {loc:#x}: readelf {want}, "
                                  f"ours {got}")
        # the end of an FDE: no CFI unless another FDE starts there or still covers it
        covered = reach[bisect.bisect_right(starts, f.end) - 1] > f.end
        if (nxt is None or f.end < nxt) and not covered:
            allowed.add(f.end)
            row = table.lookup(f.end)
            if row is None or row.cfa_rule != CFA_UNDEFINED:
                mismatches.append(f"{path}: end of FDE {f.offset:#x} at {f.end:#x}: {row}")
    # ours alone: the outermost frame at an entry point no FDE covers (ld.so's _start), one
    # byte long, then no CFI again (unwind/build.py entry_row)
    entry = elf_info_of_path(path, want_sections=False).entry
    if entry and not any(f.start <= entry < f.end for f in fdes):
        end_row, after = table.lookup(entry), table.lookup(entry + 1)
        assert end_row is not None and CFA_NAMES[end_row.cfa_rule] == "end", end_row
        assert after is None or after.cfa_rule == CFA_UNDEFINED or after.pc > entry + 1, after
        allowed.update((entry, entry + 1))
    stray = [r for r in table if r.pc not in allowed]
    assert not mismatches, f"{len(mismatches)} mismatches, first: " + "\n".join(mismatches[:10])
    assert not stray, f"{len(stray)} rows readelf does not have, first: {stray[:5]}"
    assert per_rule, "readelf printed no rows: the comparison proved nothing"
    return per_rule


@pytest.mark.parametrize("path", SYSTEM)
def test_debian_objects_agree_with_readelf(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} not installed")
    per_rule = compare(os.path.realpath(path))
    print(path, dict(per_rule))


@pytest.mark.parametrize("name", ["workload-pie", "workload-nopie", "libfixture.so",
                                  "workload-nofp", "libfixture-nofp.so"])
def test_fixtures_agree_with_readelf(fixture_bins: Path, name):
    compare(str(fixture_bins / name))


@pytest.mark.parametrize("link", [[], ["-Wl,--compress-debug-sections=zlib"]])
def test_debug_frame_only_object_agrees_with_readelf(tmp_path: Path, link):
    """Code compiled without unwind tables has only .debug_frame (zlib-compressed with
    --compress-debug-sections); the crt files linked in bring .eh_frame for _start: both
    sections end up in the table."""
    src = tmp_path / "f.c"
    src.write_text("int g(int x) { return x * 3; }\n"
                   "int f(int x) { int a[64]; for (int i = 0; i < 64; i++) a[i] = g(x + i);"
                   " return a[x & 63]; }\n"
                   "int main(int c, char **v) { (void)v; return f(c); }\n")
    out = tmp_path / "dbg"
    subprocess.run(["gcc", "-O0", "-g", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
                    *link, "-o", str(out), str(src)], check=True)
    sections = subprocess.run(["readelf", "-SW", str(out)], capture_output=True, text=True,
                              check=True).stdout
    assert ".debug_frame" in sections
    per_rule = compare(str(out))
    assert per_rule["rbp"] > 0  # -O0 code: CFA = rbp + 16 after the prologue


def test_signal_trampoline_is_exactly_restore_rt():
    """glibc's __restore_rt (mov $15, %rax; syscall = rt_sigreturn) has the only CFA_SIGNAL
    rows, over its FDE's real range, which starts 1 byte before the symbol so that a lookup
    of the return address minus one (the kernel's pretcode points at __restore_rt) lands in
    it."""
    table = build(LIBC)
    signal = [(i, r) for i, r in enumerate(table) if r.cfa_rule == CFA_SIGNAL]
    assert len(signal) == 1
    i, row = signal[0]
    end = table[i + 1]
    assert end.cfa_rule == CFA_UNDEFINED
    seg = next(s for s in elf_info_of_path(LIBC).loads
               if s.vaddr <= row.pc < s.vaddr + s.filesz)
    with open(LIBC, "rb") as f:
        f.seek(row.pc - seg.vaddr + seg.offset)
        code = f.read(end.pc - row.pc)
    # the FDE covers a padding byte, then `48 c7 c0 0f 00 00 00 0f 05`: mov $0xf,%rax;
    # syscall (rt_sigreturn is syscall 15 on x86-64)
    assert code[1:] == bytes.fromhex("48c7c00f0000000f05")
    debug = _libc_debug_file()
    if debug is not None:
        nm = subprocess.run(["nm", debug], capture_output=True, text=True, check=True).stdout
        addrs = [int(line.split()[0], 16) for line in nm.splitlines()
                 if line.endswith(" __restore_rt")]
        assert addrs == [row.pc + 1]


def _libc_debug_file() -> str | None:
    bid = elf_info_of_path(LIBC).build_id
    if not bid:
        return None
    p = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
    return p if os.path.exists(p) else None


@pytest.mark.parametrize("flags,threshold", [
    ([], 11),                                            # Debian 12's default lazy PLT
    (["-fcf-protection=full", "-Wl,-z,ibtplt"], 9),      # IBT PLT: endbr64 + .plt.sec
])
def test_plt_sections(tmp_path: Path, flags, threshold):
    """.plt: binutils' CFA expression with the threshold of its PLT layout; .plt.got and
    .plt.sec: the CIE's rsp + 8 (their FDEs have no instructions)."""
    src = tmp_path / "p.c"
    src.write_text("#include <stdio.h>\nint main(void) { puts(\"x\"); return 0; }\n")
    out = tmp_path / "p"
    subprocess.run(["gcc", "-O1", *flags, "-o", str(out), str(src)], check=True)
    table = build(str(out))
    compare(str(out))
    info = elf_info_of_path(str(out))
    plt = info.section(".plt")
    assert plt is not None
    first, lazy = table.lookup(plt.addr), table.lookup(plt.addr + 16)
    assert (first.cfa_rule, first.cfa_offset) == (CFA_RSP, 16)
    assert (lazy.cfa_rule, lazy.cfa_offset, lazy.rbp_offset) == (CFA_PLT, 8, threshold)
    others = [s for s in (info.section(".plt.got"), info.section(".plt.sec")) if s]
    assert others and (".plt.sec" in {s.name for s in others}) == bool(flags)
    for sec in others:
        for pc in range(sec.addr, sec.addr + sec.size):
            row = table.lookup(pc)
            assert (row.cfa_rule, row.cfa_offset, row.rbp_rule) == (CFA_RSP, 8, RBP_SAME)
