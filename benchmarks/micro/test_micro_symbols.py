"""Symbol lookup per address in libc: what ebpf-symbolize does for each unique address
(normalize to an ELF address, look it up, make its Frame), via symbolizer/resolve.py.

- cold: a new Resolver and an empty cache directory: libc's ELF symbols are parsed first;
- disk cache: a new Resolver (a new run) with libc's table in the cache directory;
- warm: the table in memory, the addresses not yet resolved (what every address after an
  object's first costs);
- symtab: SymbolTable.lookup alone (symbolizer/symtab.py's bisect).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from recording.elf import elf_info_of_path
from symbolizer.normalize import Mapping, MappingIndex, ObjectInfo
from symbolizer.options import SymbolizeOptions
from symbolizer.resolve import Resolver

N = 1000
PID = 4242
BASE = 0x7F00_0000_0000


class Setup:
    """A process with libc mapped at BASE and N addresses inside its functions."""

    def __init__(self, libc: str, cache_dir: str) -> None:
        info = elf_info_of_path(libc)
        self.obj = ObjectInfo("libc", libc, info.build_id, info.elf_type, info.loads)
        text = next(s for s in info.loads if s.flags & 1)
        self.index = MappingIndex()
        self.index.add_object(self.obj)
        self.index.add_process(PID, 0, 0)
        # address - start + file_offset = file offset; start = BASE + vaddr makes the ELF
        # address of BASE + v exactly v.
        self.index.add_mapping(PID, 0, Mapping(BASE + text.vaddr, BASE + text.vaddr + text.filesz,
                                               text.offset, libc, "libc"))
        self.snap = self.index.snapshot_for(PID, 0)
        self.cache_dir = cache_dir
        table = self.resolver().symbols(self.obj).table
        # Inside sized functions (a zero-sized symbol at the end covers nothing).
        funcs = [e.addr + min(4, e.size // 2) for e in table.entries()
                 if text.vaddr <= e.addr < text.vaddr + text.filesz and e.size > 1]
        step = max(1, len(funcs) // N)
        picked = list(itertools.islice(itertools.cycle(funcs[::step]), N))
        self.wanted = [(self.snap, PID, BASE + a, False) for a in picked]

    def resolver(self, cache_dir: str | None = None) -> Resolver:
        # No debug directories: the figures are libc's own .dynsym, whatever is installed.
        opts = SymbolizeOptions(debug_dirs=(), cache_dir=cache_dir or self.cache_dir)
        return Resolver(opts, self.index)


@pytest.fixture(scope="module")
def setup(libc, tmp_path_factory) -> Setup:
    return Setup(libc, str(tmp_path_factory.mktemp("symcache")))


def _resolved(resolver: Resolver, setup: Setup) -> int:
    """Distinct addresses named (user() answers from what prepare_user kept)."""
    return len({a for snap, pid, a, ret in setup.wanted
                if resolver.user(snap, pid, a, ret)[0][0].resolved})


def test_lookup_cold_1000_addresses(benchmark, setup, tmp_path_factory):
    def fresh():
        return (setup.resolver(str(tmp_path_factory.mktemp("cold"))),), {}

    def run(resolver):
        resolver.prepare_user(setup.wanted)
        return resolver

    resolver = benchmark.pedantic(run, setup=fresh, rounds=10)
    assert resolver.cache.parsed == 1
    assert _resolved(resolver, setup) == len({w[2] for w in setup.wanted})


def test_lookup_disk_cache_1000_addresses(benchmark, setup):
    assert list(Path(setup.cache_dir, "symbols").glob("*/*.sym"))  # libc's, from Setup

    def fresh():
        return (setup.resolver(),), {}

    def run(resolver):
        resolver.prepare_user(setup.wanted)
        return resolver

    resolver = benchmark.pedantic(run, setup=fresh, rounds=20)
    assert _resolved(resolver, setup) == len({w[2] for w in setup.wanted})


def test_lookup_warm_1000_addresses(benchmark, setup):
    resolver = setup.resolver()
    resolver.prepare_user(setup.wanted[:1])

    def run():
        resolver.forget(PID)  # the addresses' frames, not the object's table
        resolver.prepare_user(setup.wanted)

    benchmark(run)
    assert _resolved(resolver, setup) == len({w[2] for w in setup.wanted})


def test_symtab_lookup_1000_addresses(benchmark, setup):
    table = setup.resolver().symbols(setup.obj).table
    addrs = [a - BASE for _, _, a, _ in setup.wanted]

    def run():
        return [table.lookup(a) for a in addrs]

    hits = benchmark(run)
    assert all(hits)
