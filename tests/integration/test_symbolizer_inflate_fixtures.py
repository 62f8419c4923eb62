"""Compressed sections in the C fixtures (built by gcc) and in objcopy's output: bounded in
memory, and still read (issue 8 #10)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from symbolizer.lines import resolve_lines
from tests.conftest import setup_tool, tool
from tests.helpers.crafted import (
    RSS_LIMIT_KB,
    crafted_recording,
    max_rss_kb,
    nm_address,
    symtab_bomb,
)


def test_symtab_bomb_is_too_large_in_bounded_memory(fixture_bins, tmp_path):
    lib = fixture_bins / "libfixture.so"
    bomb = tmp_path / "libbomb.so"
    bomb.write_bytes(symtab_bomb())
    assert bomb.stat().st_size < 2 << 20
    rec = crafted_recording(tmp_path / "r.parquet", path=str(bomb), build_id=None,
                            elf_addr=nm_address(lib, "lib_beta") + 4, layout_of=lib)
    r, rss = max_rss_kb([tool("ebpf-symbolize"), str(rec), "--cache-dir", str(tmp_path / "c")])
    assert ".symtab too large: inflates to 1073741824 bytes, limit 268435456" in r.stderr
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss // 1024} MB"


@pytest.mark.parametrize("how", ["zlib", "zlib-gnu"])
def test_lines_still_reads_compressed_dwarf(fixture_bins, tmp_path, how):
    # Debian's -dbgsym files have compressed DWARF: the bound must not lose them
    setup_tool("objcopy", "binutils")
    exe = tmp_path / "workload-pie"
    subprocess.run(["objcopy", f"--compress-debug-sections={how}",
                    str(fixture_bins / "workload-pie"), str(exe)], check=True)
    addr = nm_address(exe, "alpha") + 4
    got = resolve_lines(str(exe), [addr])
    assert got and got[addr][-1][0] == "alpha"
    assert Path(got[addr][-1][1] or "").name == "workload.c"
