"""A child sampled inside execve still runs its parent's code (symbolizer/normalize.py,
MappingIndex.for_user_stack): its leaf, outside every mapping of the child's new program, is
named from the parent's mappings, as perf names it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from recording.reader import iter_batches
from recording.schema import SCHEMA, rows_to_batch
from symbolizer.engine import Engine
from symbolizer.options import SymbolizeOptions
from tests.helpers.synthetic import synthetic_recording

CHILD = 4_000_001


def leaves(path: Path) -> dict[tuple[str, str], int]:
    engine = Engine(SymbolizeOptions(cache_dir=None))
    for b in iter_batches(str(path)):
        engine.feed_metadata(b)
    windows = [w for b in iter_batches(str(path)) for w in engine.feed(b, metadata=False)]
    got: dict[tuple[str, str], int] = {}
    for window in windows + engine.finish():
        for profile in window:
            for stack, n in profile.stacks.items():
                key = (stack[0].name, stack[-1].name)
                got[key] = got.get(key, 0) + n
    return got


def with_child(base: Path, out: Path, ppid: int | None) -> Path:
    rows = pq.read_table(base).to_pylist()
    parent = next(r for r in rows if r["record"] == "process")
    sample = next(r for r in rows if r["record"] == "sample")
    # the child: its new program mapped where the parent has nothing
    rows += [{"record": "process", "pid": CHILD, "ppid": ppid, "maps_seq": 0,
              "time_ns": parent["time_ns"], "comm": "true"},
             {"record": "mapping", "pid": CHILD, "maps_seq": 0, "start": 0x10000,
              "end": 0x20000, "file_offset": 0, "path": "/usr/bin/true", "perms": "r-xp"},
             {**sample, "pid": CHILD, "comm": "true", "count": 7}]
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA),
                   out)
    return out


def test_a_leaf_outside_the_childs_mappings_is_named_by_its_parents(fixture_bins, tmp_path):
    base = synthetic_recording(tmp_path / "base.parquet", fixture_bins / "workload-pie",
                               fixture_bins / "libfixture.so", seconds=1)
    parent_pid = next(r["pid"] for r in pq.read_table(base).to_pylist()
                      if r["record"] == "process")
    named = leaves(with_child(base, tmp_path / "child.parquet", parent_pid))
    parent_leaf = next(leaf for (comm, leaf) in named if comm == "workload-pie")
    assert named.get(("true", parent_leaf)) == 7, named
    # without a parent recorded, the same leaf stays unmapped
    alone = leaves(with_child(base, tmp_path / "alone.parquet", None))
    assert ("true", parent_leaf) not in alone, alone
