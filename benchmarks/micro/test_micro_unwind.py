"""Unwind-table build from libc's .eh_frame (unwind/cache.py TableCache): a cold build into an
empty cache directory, and a warm load of the table it wrote (a new TableCache: nothing in
memory). extra_info has the object's .eh_frame bytes: seconds per MB is mean / eh_frame_mb.
"""

from __future__ import annotations

import pytest

from recording.elf import elf_info_of_path
from unwind.cache import TableCache
from unwind.table import UnwindTable


@pytest.fixture(scope="module")
def eh_frame_mb(libc) -> float:
    section = elf_info_of_path(libc).section(".eh_frame")
    assert section is not None, f"{libc} has no .eh_frame"
    return section.size / 1e6


def test_unwind_table_cold_build_libc(benchmark, libc, eh_frame_mb, tmp_path_factory):
    def fresh():
        return (TableCache(str(tmp_path_factory.mktemp("unwind-cold"))),), {}

    def run(cache):
        return cache, cache.table_for(libc)

    cache, table = benchmark.pedantic(run, setup=fresh, rounds=5)
    benchmark.extra_info["eh_frame_mb"] = eh_frame_mb
    assert isinstance(table, UnwindTable) and cache.stats.built == 1
    assert cache.stats.disk_writes == 1


def test_unwind_table_warm_load_libc(benchmark, libc, eh_frame_mb, tmp_path):
    built = TableCache(str(tmp_path)).table_for(libc)
    assert isinstance(built, UnwindTable)

    def run():
        cache = TableCache(str(tmp_path))
        return cache, cache.table_for(libc)

    cache, table = benchmark(run)
    benchmark.extra_info["eh_frame_mb"] = eh_frame_mb
    assert cache.stats.disk_hits == 1 and cache.stats.built == 0
    assert isinstance(table, UnwindTable) and table.rows == built.rows
