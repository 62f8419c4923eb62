"""The DuckDB queries of docs/recording-format.md, run as written (only the file name
replaced) and checked against ebpf-symbolize's own answer on the same input."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import duckdb

from profiles.model import FrameKind, Profile
from symbolizer.sinks import parquet
from tests.helpers.doc_queries import doc_query
from tests.helpers.sinks import synthetic_profiles


def with_processes() -> list[Profile]:
    """The synthetic profiles, each stack split between two processes."""
    out = []
    for p in synthetic_profiles():
        q = Profile(p.start_ns, p.end_ns, p.sample_rate, dict(p.labels))
        for i, (stack, n) in enumerate(p.stacks.items()):
            q.add(stack, n - n // 3, 100 + i % 2, "a" if i % 2 else "b")
            if n // 3:
                q.add(stack, n // 3, 200, "c")
        out.append(q)
    return out


def frames_file(tmp_path: Path) -> Path:
    buf = io.BytesIO()
    parquet.write(with_processes(), buf)
    path = tmp_path / "frames.parquet"
    path.write_bytes(buf.getvalue())
    return path


def test_top_functions_per_process(tmp_path):
    want: Counter[tuple[int, str, str]] = Counter()
    for p in with_processes():
        for (stack, pid, comm), n in p.processes.items():
            want[(pid, comm, stack[-1].name)] += n
    rows = duckdb.sql(doc_query("top functions per process (self time)",
                                frames_file(tmp_path))).fetchall()
    assert {(pid, comm, f): n for pid, comm, f, n in rows} == dict(want)


def test_inclusive_time_per_function_counts_recursion_once(tmp_path):
    want: Counter[str] = Counter()
    for p in with_processes():
        for stack, n in p.stacks.items():
            for name in {f.name for f in stack}:
                want[name] += n
    rows = duckdb.sql(doc_query("inclusive time per function", frames_file(tmp_path)))
    got = dict(rows.fetchall())
    assert got == dict(want)
    assert got["recurse"] == 4  # three frames deep, four samples


def test_samples_per_window_and_unresolved(tmp_path):
    path = frames_file(tmp_path)
    windows = duckdb.sql(doc_query("samples per window", path)).fetchall()
    assert windows == [(p.start_ns, p.total) for p in with_processes()]
    unresolved = duckdb.sql(doc_query("unresolved frames and why", path)).fetchall()
    assert sum(n for *_x, n in unresolved) == sum(
        n for p in with_processes() for s, n in p.stacks.items()
        for f in s if f.reason is not None and f.kind != FrameKind.ROOT)
