"""Compact symbol tables and the by-build-ID cache (disk and in-memory LRU)."""

from __future__ import annotations

import os

import pytest

from symbolizer.cache import SymbolCache
from symbolizer.sources import ObjectSymbols
from symbolizer.symtab import CacheFormatError, SymbolEntry, SymbolTable

BID = "ab" + "cd" * 19


def table() -> SymbolTable:
    return SymbolTable.build([SymbolEntry(0x2000, 0x10, b"b"), SymbolEntry(0x1000, 0x20, b"a"),
                              SymbolEntry(0x1000, 0x20, b"a_alias", rank=-1),
                              SymbolEntry(0x3000, 0, b"asm_label")])


def test_lookup_bounds():
    t = table()
    assert t.lookup(0x1000) == ("a", 0x1000)
    assert t.lookup(0x101F) == ("a", 0x1000)
    assert t.lookup(0x1020) is None  # past a sized symbol
    assert t.lookup(0x2005) == ("b", 0x2000)
    assert t.lookup(0xFFF) is None
    assert t.lookup(0x3005) is None  # zero-sized last symbol covers nothing past itself


def test_bytes_roundtrip_and_damage_detected():
    t = table()
    back = SymbolTable.from_bytes(t.to_bytes())
    assert list(back.entries()) == list(t.entries())
    with pytest.raises(CacheFormatError):
        SymbolTable.from_bytes(t.to_bytes()[:-3])


def test_second_lookup_comes_from_disk(tmp_path):
    calls = []

    def find(fallback):
        calls.append(fallback)
        return ObjectSymbols(table(), "debug file x", True)

    SymbolCache(str(tmp_path), 4).get(BID, BID, find)
    fresh = SymbolCache(str(tmp_path), 4)
    got = fresh.get(BID, BID, find)
    assert len(calls) == 1 and fresh.disk_hits == 1
    assert got.table.lookup(0x2001) == ("b", 0x2000)


def test_partial_entry_is_offered_as_fallback_but_search_repeats(tmp_path):
    seen = []

    def partial(fallback):
        seen.append(fallback)
        return ObjectSymbols(table(), ".dynsym of x", False, problem="no debug file")

    SymbolCache(str(tmp_path), 4).get(BID, BID, partial)
    SymbolCache(str(tmp_path), 4).get(BID, BID, partial)
    assert seen[0] is None and seen[1] is not None and seen[1].source == ".dynsym of x"


def test_damaged_cache_file_is_rebuilt(tmp_path):
    find_count = []

    def find(fallback):
        find_count.append(1)
        return ObjectSymbols(table(), "debug file x", True)

    SymbolCache(str(tmp_path), 4).get(BID, BID, find)
    sym = tmp_path / "symbols" / BID[:2] / (BID[2:] + ".sym")
    sym.write_bytes(b"garbage")
    SymbolCache(str(tmp_path), 4).get(BID, BID, find)
    assert len(find_count) == 2 and os.path.getsize(sym) > 7


def test_memory_holds_at_most_capacity_objects(tmp_path):
    cache = SymbolCache(None, 2)
    for key in "abc":
        cache.get(key, None, lambda fb: ObjectSymbols(SymbolTable.empty(), "x", True))
    assert len(cache._mem) == 2 and "a" not in cache._mem


def _modes(root) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in root.rglob("*")}


def test_cache_is_private_whatever_the_umask(tmp_path):
    # issue 8 #4: symbols of root-only binaries must not be readable by other users
    old = os.umask(0o022)
    try:
        SymbolCache(str(tmp_path / "home/.cache/ebpf-profiler"), 4).get(
            BID, BID, lambda _f: ObjectSymbols(table(), "debug file x", True))
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "home")
    files = {p: m for p, m in modes.items() if p.endswith((".sym", ".json"))}
    assert len(files) == 2 and set(files.values()) == {"0o600"}
    assert {m for p, m in modes.items() if p not in files} == {"0o700"}, modes


def test_existing_open_cache_directory_is_narrowed(tmp_path):
    (tmp_path / "symbols").mkdir(mode=0o755)
    (tmp_path / "symbols").chmod(0o755)  # as an older version left it
    SymbolCache(str(tmp_path), 4).get(BID, BID,
                                      lambda _f: ObjectSymbols(table(), "debug file x", True))
    assert oct((tmp_path / "symbols").stat().st_mode & 0o777) == "0o700"
