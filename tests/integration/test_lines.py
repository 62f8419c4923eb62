"""symbolizer/lines.py against GNU `addr2line -f -i -a` (binutils) on the same addresses."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from symbolizer import lines
from symbolizer.lines import resolve_lines
from tests.conftest import setup_tool, skip_or_fail

# A program whose hot path is inlined two deep, one of the inlined calls inside a lexical
# block, with the inlined helpers in a header: each frame's file differs from its caller's.
INLINE_H = """
static inline __attribute__((always_inline)) unsigned long leaf_mix(unsigned long x)
{
    x ^= x >> 13;
    x *= 0x9e3779b97f4a7c15UL;
    return x;
}

static inline __attribute__((always_inline)) unsigned long mid_step(unsigned long x)
{
    unsigned long y = leaf_mix(x + 1);
    return y + leaf_mix(y);
}
"""
INLINE_C = """
#include <stdlib.h>
#include "inl.h"

__attribute__((noinline)) unsigned long outer(unsigned long n)
{
    unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) {
        if (i & 1) {
            unsigned long t = mid_step(i);
            acc += t;
        } else {
            acc ^= leaf_mix(i);
        }
    }
    return acc;
}

int main(int argc, char **argv)
{
    return (int)outer(argc > 1 ? strtoul(argv[1], 0, 10) : 10);
}
"""


def _need(tool: str) -> str:
    return setup_tool(tool, "binutils or elfutils")


@pytest.fixture(scope="module")
def inline_bins(tmp_path_factory) -> dict[str, Path]:
    gcc = _need("gcc")
    d = tmp_path_factory.mktemp("inline")
    (d / "inl.h").write_text(INLINE_H)
    (d / "inl.c").write_text(INLINE_C)
    out = {}
    for name, flags in {"dwarf5": ["-gdwarf-5"], "dwarf4": ["-gdwarf-4"]}.items():
        exe = d / f"inl-{name}"
        subprocess.run([gcc, "-O2", "-g", *flags, "-o", str(exe), str(d / "inl.c")],
                       check=True, cwd=d)
        out[name] = exe
    return out


def _text_range(path: Path) -> tuple[int, int]:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"\.text\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", out)
    assert m, out
    start = int(m.group(1), 16)
    return start, start + int(m.group(2), 16)


def addr2line(path: Path, addrs: list[int]) -> dict[int, list[tuple[str, str, int]]]:
    """GNU addr2line's frames per address, innermost first; only where it knows file:line."""
    exe = _need("addr2line")
    res = subprocess.run([exe, "-f", "-i", "-a", "-e", str(path), *map(hex, addrs)],
                         capture_output=True, text=True, check=True, timeout=120)
    out: dict[int, list[tuple[str, str, int]]] = {}
    current: int | None = None
    it = iter(res.stdout.splitlines())
    for line in it:
        if line.startswith("0x"):
            current = int(line, 16)
            out[current] = []
            continue
        func, where = line, next(it)
        where = re.sub(r" \(discriminator \d+\)$", "", where)
        file, _, lno = where.rpartition(":")
        assert current is not None
        if file != "??" and lno.isdigit() and int(lno) > 0:
            out[current].append((func, file, int(lno)))
    return {a: frames for a, frames in out.items() if frames}


def eu_addr2line(path: Path, addrs: list[int]) -> dict[int, list[tuple[str, str, int]]]:
    """The same from elfutils' eu-addr2line, a second, independent DWARF reader."""
    exe = _need("eu-addr2line")
    res = subprocess.run([exe, "-f", "-i", "-a", "-e", str(path), *map(hex, addrs)],
                         capture_output=True, text=True, check=True, timeout=120)
    out: dict[int, list[tuple[str, str, int]]] = {}
    current = 0
    it = iter(res.stdout.splitlines())
    for line in it:
        if line.startswith("0x"):
            current = int(line, 16)
            out[current] = []
            continue
        func, where = line.split(" inlined at ")[0], next(it)
        m = re.match(r"(.*?):(\d+)(?::\d+)?$", where)
        if m and m.group(1) != "??" and int(m.group(2)) > 0:
            out[current].append((func, m.group(1), int(m.group(2))))
    return {a: frames for a, frames in out.items() if frames}


def ours(path: Path, addrs: list[int]) -> dict[int, list[tuple[str, str, int]]]:
    got = resolve_lines(str(path), addrs)
    return {a: [(f or "??", file or "??", ln or 0) for f, file, ln, _ in frames]
            for a, frames in got.items()}


def _same(want: list[tuple[str, str, int]] | None, got: list[tuple[str, str, int]] | None
          ) -> bool:
    """Equal frames; a function we leave unnamed (no DWARF subprogram covers the address,
    where addr2line falls back to the symbol table, as our caller does) matches any name."""
    if want is None or got is None:
        return want == got
    return len(want) == len(got) and all(
        (g[0] == "??" or w[0] == g[0]) and w[1:] == g[1:] for w, g in zip(want, got, strict=True))


def _compare(path: Path, addrs: list[int]) -> tuple[int, int]:
    """(addresses compared, disagreements with GNU addr2line settled by elfutils).

    binutils 2.40 reads a DWARF 5 line program's initial file register (1) as the unit's
    primary file (entry 0), so it names the including .c file where the code comes from an
    #included one (glibc's getXXent.c inside getservent.c): where GNU addr2line differs from
    us, eu-addr2line must agree with us instead."""
    want = addr2line(path, addrs)
    got = ours(path, addrs)
    assert want, "addr2line resolved nothing: the comparison would be empty"
    differ = [a for a in addrs if not _same(want.get(a), got.get(a))]
    if differ:
        eu = eu_addr2line(path, differ)
        wrong = {hex(a): (want.get(a), eu.get(a), got.get(a)) for a in differ
                 if not _same(eu.get(a), got.get(a))}
        assert not wrong, dict(list(wrong.items())[:10])
    return len(want), len(differ)


@pytest.mark.parametrize("binary", ["workload-pie", "workload-nopie", "libfixture.so"])
def test_same_file_line_as_addr2line_on_the_fixture(fixture_bins, binary):
    # GIVEN every byte of the fixture's .text (instruction starts and middles alike)
    path = fixture_bins / binary
    start, end = _text_range(path)
    addrs = list(range(start, end))
    # THEN our frames equal addr2line's wherever either resolves
    compared, differ = _compare(path, addrs)
    assert compared > 40
    assert differ == 0  # DWARF 5 from gcc without #included code: no binutils quirk here


@pytest.mark.parametrize("dwarf", ["dwarf5", "dwarf4"])
def test_inlined_frames_match_addr2line(inline_bins, dwarf):
    path = inline_bins[dwarf]
    start, end = _text_range(path)
    addrs = list(range(start, end))
    compared, differ = _compare(path, addrs)
    assert compared > 40 and differ == 0
    # The program does inline two deep: some address has three frames, innermost first,
    # flagged inlined except the last.
    got = resolve_lines(str(path), addrs)
    deep = [frames for frames in got.values() if len(frames) == 3]
    assert deep
    assert [(f, inl) for f, _, _, inl in deep[0]] == [
        ("leaf_mix", True), ("mid_step", True), ("outer", False)]
    assert deep[0][0][1].endswith("inl.h") and deep[0][2][1].endswith("inl.c")


def _libc_debug_file() -> Path | None:
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    if not libc.exists():
        return None
    notes = subprocess.run(["readelf", "-n", str(libc)], capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", notes)
    if not m:
        return None
    bid = m.group(1)
    path = Path("/usr/lib/debug/.build-id") / bid[:2] / f"{bid[2:]}.debug"
    return path if path.exists() else None


def test_libc_debug_file_matches_addr2line():
    # Debian's libc6-dbg: real-world DWARF 5 with inlining, rnglists and many units.
    path = _libc_debug_file()
    if path is None:
        skip_or_fail("libc6-dbg (installed by `make setup`) is not installed")
    nm = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    funcs = sorted({int(a, 16) for a, t, *_ in (ln.split() for ln in nm.splitlines())
                    if t in "Tt" and int(a, 16)})
    rng = random.Random(7)
    addrs = [a + rng.randrange(0, 24) for a in rng.sample(funcs, 80)]
    compared, differ = _compare(path, addrs)
    assert compared >= 60
    assert differ < compared // 4


def test_missing_non_elf_and_dwarfless_files_give_nothing(tmp_path, fixture_bins):
    (tmp_path / "text").write_text("not an ELF file")
    stripped = tmp_path / "stripped"
    subprocess.run(["objcopy", "--strip-debug", str(fixture_bins / "workload-pie"),
                    str(stripped)], check=True)
    for p in (tmp_path / "missing", tmp_path / "text", stripped, tmp_path):
        assert resolve_lines(str(p), [0x1000, 0x11F9]) == {}


def _section(path: Path, name: str) -> tuple[int, int]:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(rf"{re.escape(name)}\s+PROGBITS\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)", out)
    assert m, name
    return int(m.group(1), 16), int(m.group(2), 16)


def test_mutated_dwarf_never_raises(tmp_path, inline_bins):
    # GIVEN copies of the inline program with garbage written into its DWARF sections,
    # or cut short
    src = inline_bins["dwarf5"]
    data = src.read_bytes()
    start, end = _text_range(src)
    addrs = list(range(start, end, 3))
    rng = random.Random(1234)
    variants = []
    for section in (".debug_info", ".debug_line", ".debug_abbrev", ".debug_rnglists",
                    ".debug_str"):
        try:
            off, size = _section(src, section)
        except AssertionError:
            continue
        for _ in range(6):
            b = bytearray(data)
            for _ in range(rng.randrange(1, 12)):
                b[off + rng.randrange(size)] = rng.randrange(256)
            variants.append(bytes(b))
    variants += [data[: len(data) * k // 8] for k in range(1, 8)]
    resolved = 0
    for i, blob in enumerate(variants):
        p = tmp_path / f"mutant{i}"
        p.write_bytes(blob)
        # WHEN resolving THEN no exception escapes, and answers keep their shape
        got = resolve_lines(str(p), addrs)
        for frames in got.values():
            assert frames and all(len(f) == 4 for f in frames)
        resolved += bool(got)
    assert len(variants) > 20
    assert resolved > 0  # light damage still leaves most addresses resolvable


def _symbol_address(path: str, name: str) -> int:
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    return next(int(a, 16) for a, _t, n in (ln.split() for ln in out.splitlines()
                                             if len(ln.split()) == 3) if n == name)


def test_each_file_is_indexed_once(fixture_bins, monkeypatch):
    lines.clear_cache()
    built = []
    real = lines._DwarfIndex

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, path: str) -> None:
            built.append(path)
            super().__init__(path)

    monkeypatch.setattr(lines, "_DwarfIndex", Counting)
    path = str(fixture_bins / "workload-pie")
    alpha, gamma = (_symbol_address(path, name) + 4 for name in ("alpha", "gamma_fn"))
    first = resolve_lines(path, [alpha])
    second = resolve_lines(path, [alpha, gamma])
    assert built == [path]
    assert first[alpha] == second[alpha]
    assert second[gamma][0][0] == "gamma_fn"
    lines.clear_cache()
