"""parquet sink: one row per (stack, frame), queried with DuckDB."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections import Counter

import duckdb
import pyarrow.parquet as pq
import pytest

from symbolizer.sinks import parquet
from tests.helpers.sinks import (
    EXE,
    EXE_BID,
    LIB,
    LIB_BID,
    START_NS,
    UNRESOLVED,
    WINDOW_NS,
    folded_lines,
    self_and_total,
    synthetic_profiles,
)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "frames.parquet"
    with path.open("wb") as f:
        parquet.write(synthetic_profiles(), f)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW frames AS SELECT * FROM read_parquet('{path}')")
    return con


def test_duckdb_rebuilds_the_folded_stacks(db):
    rows = db.execute("""
        SELECT string_agg("function", ';' ORDER BY depth), any_value(count)
        FROM frames GROUP BY window_start_ns, stack_id, labels['pid'][1]
    """).fetchall()
    got: Counter[str] = Counter()
    for stack, count in rows:
        got[stack] += count
    assert got == folded_lines(synthetic_profiles())


def test_duckdb_self_time_and_window_totals(db):
    flat, _ = self_and_total(synthetic_profiles())
    leaf = dict(db.execute("""
        SELECT "function", sum(count) FROM frames WHERE depth = stack_depth - 1 GROUP BY 1
    """).fetchall())
    assert leaf == dict(flat)
    windows = db.execute("""
        SELECT window_start_ns, window_end_ns, sum(count) FROM frames WHERE depth = 0
        GROUP BY ALL ORDER BY 1
    """).fetchall()
    assert windows == [(START_NS + i * WINDOW_NS, START_NS + (i + 1) * WINDOW_NS, p.total)
                       for i, p in enumerate(synthetic_profiles())]


def test_frame_facts_and_reasons_survive(db):
    objects = dict(db.execute("""
        SELECT DISTINCT object, build_id FROM frames WHERE kind = 'user' AND object IS NOT NULL
    """).fetchall())
    assert objects == {EXE: EXE_BID, LIB: LIB_BID}
    unresolved = db.execute("""
        SELECT "function", address, elf_addr, object, reason, sum(count) FROM frames
        WHERE reason IS NOT NULL AND object IS NOT NULL GROUP BY ALL
    """).fetchall()
    assert unresolved == [(UNRESOLVED.name, UNRESOLVED.address, UNRESOLVED.elf_addr, LIB,
                           UNRESOLVED.reason, 3)]
    inl = db.execute("""
        SELECT "function", file, line FROM frames WHERE inlined ORDER BY depth
    """).fetchall()
    assert inl == [("helper", "helper.h", 12), ("inner_helper", "helper.h", 5)]
    # Kernel addresses above 2^63 keep their value (unsigned column).
    kmax = db.execute("SELECT max(address) FROM frames WHERE kind = 'kernel'").fetchall()[0]
    assert kmax[0] > 2**63
    # The same stack in two windows has one stack_id.
    n = db.execute("""
        SELECT count(DISTINCT window_start_ns) FROM frames
        WHERE stack_id = (SELECT stack_id FROM frames WHERE "function" = 'alpha' LIMIT 1)
    """).fetchall()[0]
    assert n == (2,)


def test_streams_to_a_pipe(tmp_path):
    # GIVEN a sink writing to a pipe (not seekable), as `--out -` does
    code = (
        "import sys; sys.path[:0] = sys.argv[1:3];"
        "from tests.helpers.sinks import synthetic_profiles;"
        "from symbolizer.sinks import parquet;"
        "parquet.write(synthetic_profiles(), sys.stdout.buffer)"
    )
    here = os.path.dirname(__file__)
    root = os.path.dirname(os.path.dirname(here))
    res = subprocess.run([sys.executable, "-c", code, here, root], capture_output=True,
                         timeout=60, check=True)
    path = tmp_path / "piped.parquet"
    path.write_bytes(res.stdout)
    total = duckdb.sql(f"SELECT sum(count) FROM '{path}' WHERE depth = 0").fetchall()[0]
    assert total == (sum(p.total for p in synthetic_profiles()),)


def test_empty_input_is_a_valid_file_with_the_schema():
    buf = io.BytesIO()
    parquet.write([], buf)
    table = pq.read_table(io.BytesIO(buf.getvalue()))
    assert table.num_rows == 0
    assert table.schema.names == parquet.SCHEMA.names
