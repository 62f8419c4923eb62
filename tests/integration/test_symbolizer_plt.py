"""PLT stubs named `name@plt` as GNU objdump names them, on the system's own binaries and on
programs built here with and without Intel CET's .plt.sec; zero-sized symbols do not stretch
over the PLT; glibc's aliases are chosen as perf chooses them."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from symbolizer.elfsyms import read_elf_symbols
from symbolizer.normalize import ObjectInfo
from symbolizer.options import SymbolizeOptions
from symbolizer.sources import SymbolFinder
from tests.conftest import skip_or_fail

PROGRAM = r"""
#include <math.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    printf("%d %f\n", memcmp(argv[0], "x", 1), cos(argc));
    return 0;
}
"""
_STUB = re.compile(r"^([0-9a-f]+) <(.+@plt)>:$")
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def objdump_stubs(path: Path | str) -> dict[int, str]:
    out = subprocess.run(["objdump", "-d", "-j", ".plt", "-j", ".plt.sec", "-j", ".plt.got",
                          str(path)], capture_output=True, text=True).stdout
    return {int(m.group(1), 16): m.group(2) for line in out.splitlines()
            if (m := _STUB.match(line)) and "@plt-0x" not in m.group(2)}


def elf_symbols(path: Path | str):
    with open(path, "rb") as f:
        return read_elf_symbols(f, os.path.getsize(path))


def table_of(path: Path | str):
    from recording.elf import elf_info_of_path

    info = elf_info_of_path(str(path))
    obj = ObjectInfo(info.build_id or str(path), str(path), info.build_id, info.elf_type,
                     info.loads)
    return SymbolFinder(SymbolizeOptions(cache_dir=None)).find(obj).table


def expected_name(objdump_name: str, path: Path | str) -> str:
    """objdump names an IRELATIVE stub `*ABS*+0xADDR@plt`; perf names it after the ifunc at
    ADDR among the symbols of the file itself (get_ifunc_name), and so do we: for a stripped
    libc that is its exported name (`wcschr@plt`), not the local alias the debug file would
    choose (`__wcschr_ifunc`)."""
    m = re.match(r"\*ABS\*\+0x([0-9a-f]+)@plt$", objdump_name)
    if not m:
        return objdump_name
    own = elf_symbols(path)
    hit = (own.symtab if len(own.symtab) else own.dynsym).lookup(int(m.group(1), 16))
    assert hit is not None, f"no ifunc at {m.group(1)} in {path}"
    return hit[0] + "@plt"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("plt")
    (d / "p.c").write_text(PROGRAM)
    out = {}
    for name, flags in {"plain": [], "nopie": ["-no-pie"],
                        "cet": ["-fcf-protection=full", "-Wl,-z,ibtplt"],
                        "bindnow": ["-Wl,-z,now"]}.items():
        subprocess.run(["gcc", "-O2", "-g", *flags, "-o", str(d / name), str(d / "p.c"), "-lm"],
                       check=True)
        out[name] = d / name
    return out


@pytest.mark.parametrize("name", ["plain", "nopie", "cet", "bindnow"])
def test_stubs_of_built_programs_match_objdump(built, name):
    want = objdump_stubs(built[name])
    assert want, "objdump found no PLT stubs: the test program no longer calls through one"
    table = table_of(built[name])
    got = {addr: (table.lookup(addr + 2) or ("-", 0)) for addr in want}
    assert {a: n for a, (n, _s) in got.items()} == want
    assert all(start == addr for addr, (_n, start) in got.items())


@pytest.mark.parametrize("path", ["/usr/bin/sort", LIBC, "/usr/bin/python3"])
def test_stubs_of_system_binaries_match_objdump(path):
    real = os.path.realpath(path)
    if not os.path.exists(real):
        pytest.skip(f"{path} not installed")
    want = {a: expected_name(n, real) for a, n in objdump_stubs(real).items()}
    assert want, f"objdump found no PLT stubs in {real}"
    table = table_of(real)
    assert {a: (table.lookup(a) or ("-",))[0] for a in want} == want


def test_zero_sized_init_does_not_cover_the_plt(built):
    """gcc's crti.o gives _init size 0; perf 6.1 stretched it over the .plt that follows
    (`sin@plt` shown as `_init`). It ends with its section now."""
    path = built["plain"]
    syms = elf_symbols(path)
    init = next(e for e in syms.symtab.entries() if e.name == b"_init")
    text = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True).stdout
    m = re.search(r"\.init\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", text)
    assert m, text
    assert init.addr == int(m.group(1), 16) and init.size == int(m.group(2), 16)
    first_stub = min(objdump_stubs(path))
    assert table_of(path).lookup(first_stub)[0] != "_init"


def test_debug_file_table_takes_stubs_from_the_binary(built, tmp_path):
    """A debug file's .plt is NOBITS: with only the debug file's .symtab the stubs would be
    unnamed. The binary is stripped and its debug file installed in a build-id tree."""
    from recording.elf import elf_info_of_path

    exe = tmp_path / "exe"
    exe.write_bytes(built["plain"].read_bytes())
    bid = elf_info_of_path(str(exe)).build_id
    tree = tmp_path / "debug" / ".build-id" / bid[:2]
    tree.mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(exe), str(tree / f"{bid[2:]}.debug")],
                   check=True)
    subprocess.run(["strip", "--strip-all", str(exe)], check=True)
    info = elf_info_of_path(str(exe))
    obj = ObjectInfo(bid, str(exe), bid, info.elf_type, info.loads)
    syms = SymbolFinder(SymbolizeOptions(cache_dir=None, debug_dirs=(str(tmp_path / "debug"),))
                        ).find(obj)
    assert syms.full and "debug file" in syms.source
    want = objdump_stubs(built["plain"])
    assert {a: syms.table.lookup(a)[0] for a in want} == want


def test_glibc_aliases_chosen_as_perf_chooses():
    """glibc's .symtab (libc6-dbg) has __libc_start_main@@GLIBC_2.34, ..@GLIBC_2.2.5 and the
    local __libc_start_main_impl at one address, and clock_gettime@@GLIBC_2.17 beside
    clock_gettime@GLIBC_2.2.5, __clock_gettime and the local __GI___clock_gettime. perf
    keeps the GLOBAL ones, then the fewest leading underscores, then the longest name, then
    the first in the table: `clock_gettime@@GLIBC_2.17`, as perf 6.1 prints it
    (test_symbolize_perf_names.py checks that on a recording)."""
    names = _debug_symtab_functions(LIBC)
    if "clock_gettime@@GLIBC_2.17" not in names or "__libc_start_main_impl" not in names:
        skip_or_fail("no versioned glibc .symtab here (install libc6-dbg)")
    table = table_of(LIBC)
    assert table.lookup(names["__GI___clock_gettime"])[0] == "clock_gettime@@GLIBC_2.17"
    assert table.lookup(names["__libc_start_main_impl"])[0] == "__libc_start_main@@GLIBC_2.34"


def _debug_symtab_functions(path: str) -> dict[str, int]:
    """name -> address of every function of the object's debug file, as readelf lists them."""
    from recording.elf import elf_info_of_path

    bid = elf_info_of_path(path).build_id or ""
    dbg = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
    if not bid or not os.path.exists(dbg):
        return {}
    out = subprocess.run(["readelf", "-sW", dbg], capture_output=True, text=True).stdout
    return {parts[7]: int(parts[1], 16) for line in out.splitlines()
            if len(parts := line.split()) == 8 and parts[3] in ("FUNC", "IFUNC")}


def test_inlined_rank_is_perf_rank():
    """_entries computes perf_rank inline for speed; the two must agree on every symbol."""
    import struct

    from symbolizer.elfsyms import _entries, perf_rank

    names = [b"__x", b"SyS_read", b"label", b"f", b"_" * 300]
    strtab = b"\0" + b"\0".join(names) + b"\0"
    offs, pos = [], 1
    for n in names:
        offs.append(pos)
        pos += len(n) + 1
    rows = [(offs[i], (bind << 4) | typ, 0, 1, 0x1000 + i, size)
            for i, (bind, typ, size) in enumerate([(1, 2, 8), (2, 2, 0), (0, 0, 0), (0, 10, 4),
                                                   (1, 2, 1)])]
    data = b"".join(struct.pack("<IBBHQQ", *r) for r in rows)
    got = list(_entries(data, strtab, True, True, {1: 2}))
    assert [e.rank for e in got] == [
        perf_rank(r[5], r[1] & 0xF, r[1] >> 4, names[i], i) for i, r in enumerate(rows)]
