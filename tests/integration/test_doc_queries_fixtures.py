"""A documented DuckDB query (docs/recording-format.md) on a recording of the C fixtures
(built by gcc)."""

from __future__ import annotations

from collections import Counter

import duckdb
import pyarrow.parquet as pq

from recording.elf import elf_info_of_path
from recording.reader import iter_batches
from recording.schema import SCHEMA, rows_to_batch
from symbolizer.engine import Engine
from symbolizer.options import SymbolizeOptions
from tests.helpers.doc_queries import T0, S, doc_query


def mapping_rows(path: str, base: int, seq: int) -> list[dict]:
    info = elf_info_of_path(path)
    return [{"record": "mapping", "pid": 7, "maps_seq": seq, "start": base + (s.vaddr & ~0xFFF),
             "end": base + s.vaddr + s.memsz, "file_offset": s.offset & ~0xFFF, "path": path,
             "perms": "r-xp", "object_id": path} for s in info.loads if s.flags & 1]


def object_row(path: str) -> dict:
    info = elf_info_of_path(path)
    return {"record": "object", "object_id": path, "path": path, "build_id": info.build_id,
            "elf_type": info.elf_type,
            "phdrs": [{"offset": s.offset, "vaddr": s.vaddr, "filesz": s.filesz,
                       "memsz": s.memsz, "flags": s.flags} for s in info.loads]}


def sample(window: int, count: int, addr: int) -> dict:
    return {"record": "sample", "window_start_ns": T0 + window * S,
            "window_end_ns": T0 + (window + 1) * S, "pid": 7, "comm": "w", "count": count,
            "user_stack": [addr], "kernel_stack": [], "kernel_stack_error": -14}


def test_samples_per_leaf_object_count_each_sample_once(fixture_bins, tmp_path):
    """A process snapshotted again after a dlopen: the second snapshot repeats the first's
    mappings. The old query joined on pid alone and counted the executable's samples once
    per snapshot."""
    exe, lib = str(fixture_bins / "workload-pie"), str(fixture_bins / "libfixture.so")
    ebase, lbase = 0x5555_0000_0000, 0x7F00_0000_0000
    etext = next(s for s in elf_info_of_path(exe).loads if s.flags & 1)
    ltext = next(s for s in elf_info_of_path(lib).loads if s.flags & 1)
    in_exe, in_lib = ebase + etext.vaddr + 0x10, lbase + ltext.vaddr + 0x10
    rows: list[dict] = [
        {"record": "process", "pid": 7, "maps_seq": 0, "time_ns": T0},
        *mapping_rows(exe, ebase, 0),
        {"record": "process", "pid": 7, "maps_seq": 1, "time_ns": T0 + S + S // 2},
        *mapping_rows(exe, ebase, 1), *mapping_rows(lib, lbase, 1),
        object_row(exe), object_row(lib),
        sample(0, 5, in_exe), sample(0, 2, in_lib),  # the library is not mapped yet
        sample(1, 7, in_exe), sample(1, 3, in_lib),
    ]
    rows += [{"record": "window", "window_start_ns": T0 + w * S,
              "window_end_ns": T0 + (w + 1) * S} for w in range(2)]
    rec = tmp_path / "run.parquet"
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA), rec)

    truth: Counter[str] = Counter()
    engine = Engine(SymbolizeOptions(cache_dir=None))
    for b in iter_batches(str(rec)):
        for window in engine.feed(b):
            for p in window:
                for stack, n in p.stacks.items():
                    leaf = stack[-1]
                    truth[leaf.object or "[unmapped]"] += n
    assert truth == {exe: 12, lib: 3, "[unmapped]": 2}

    got = dict(duckdb.sql(doc_query("samples per object of the leaf frame", rec)).fetchall())
    assert got == dict(truth)
    naive = dict(duckdb.sql(f"""
        WITH s AS (SELECT pid, count, user_stack[1] AS ip FROM '{rec}' WHERE record = 'sample'),
             m AS (SELECT pid, start, "end", path FROM '{rec}' WHERE record = 'mapping')
        SELECT m.path, sum(s.count) FROM s JOIN m ON s.pid = m.pid AND s.ip >= m.start
          AND s.ip < m."end" GROUP BY 1""").fetchall())
    assert naive[exe] == 24  # what the documented query used to say
