"""recording/small_parquet.py against pyarrow on the same files: every column of every row
group equal, for the writer settings ebpf-record uses and the variants a pyarrow release could
switch to (plain values, data pages v2, no compression); corrupt files are errors, not crashes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recording import small_parquet
from recording.batches import open_batches
from recording.columns import COLUMN_TYPES
from recording.errors import RecordingFormatError
from recording.schema import SCHEMA, rows_to_batch

ROOT = Path(__file__).resolve().parents[2]

u64 = st.integers(0, 2**64 - 1)
text = st.text(max_size=12)
phdr = st.fixed_dictionaries({"offset": u64, "vaddr": u64, "filesz": u64, "memsz": u64,
                              "flags": st.integers(0, 2**32 - 1)})
row = st.fixed_dictionaries(
    {"record": st.sampled_from(["sample", "mapping", "object", "window", "meta"])},
    optional={
        "time_ns": st.integers(-2**63, 2**63 - 1), "pid": st.integers(-2**31, 2**31 - 1),
        "comm": text, "path": st.sampled_from(["/usr/lib/libc.so.6", "/bin/sort", "é/☃", ""]),
        "start": u64, "inode": u64, "phdrs": st.none() | st.lists(st.none() | phdr, max_size=3),
        "data": st.binary(max_size=20), "count": st.integers(0, 2**40),
        "user_stack": st.none() | st.lists(u64, max_size=6),
        "kernel_stack": st.lists(st.sampled_from([0, 1, 2**63, 2**64 - 1]), max_size=130),
        "py_checksum": st.integers(0, 2**32 - 1), "value": text,
    })


def write(path: Path, groups: list[list[dict]], **kw) -> Path:
    kw.setdefault("compression", "zstd")
    with pq.ParquetWriter(path, SCHEMA, **kw) as w:  # as recording/partial.py writes it
        for rows in groups:
            w.write_table(pa.Table.from_batches([rows_to_batch(rows)], schema=SCHEMA))
    return path


def assert_same(path: Path) -> None:
    batches = small_parquet.open_small(str(path))
    assert batches is not None, "the small reader declined a file ebpf-record could write"
    got = list(batches)
    pf = pq.ParquetFile(path)
    assert len(got) == pf.num_row_groups
    for i, b in enumerate(got):
        want = pf.read_row_group(i)
        assert b.num_rows == want.num_rows
        assert b.column_names == SCHEMA.names
        for name in SCHEMA.names:
            assert b.column(name).to_pylist() == want.column(name).to_pylist(), name


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(st.lists(row, min_size=1, max_size=40), min_size=1, max_size=3),
       variant=st.sampled_from([{}, {"use_dictionary": False}, {"data_page_version": "2.0"},
                                {"compression": "none"}, {"data_page_size": 64}]))
def test_every_column_as_pyarrow_reads_it(tmp_path, groups, variant):
    assert_same(write(tmp_path / "r.parquet", groups, **variant))


def test_many_rows_wide_dictionary_indices(tmp_path, monkeypatch):
    """Thousands of distinct values: dictionary indices of 12+ bits, several pages, and a
    dictionary too large for the writer (pyarrow falls back to PLAIN pages mid-column)."""
    monkeypatch.setattr(small_parquet, "SMALL_FILE_BYTES", 64 << 20)
    rnd = random.Random(7)
    rows = [{"record": "sample", "pid": i % 300, "count": rnd.randrange(1, 9),
             "user_stack": [rnd.randrange(2**48) for _ in range(rnd.randrange(0, 40))],
             "comm": f"p{i % 5000}"} for i in range(6000)]
    path = write(tmp_path / "r.parquet", [rows[:4000], rows[4000:]], dictionary_pagesize_limit=4096)
    encodings = pq.ParquetFile(path).metadata.row_group(0).column(SCHEMA.names.index("count"))
    assert "PLAIN" in encodings.encodings
    assert_same(path)


def test_column_types_match_the_arrow_schema():
    assert {f.name: str(f.type) for f in SCHEMA} == COLUMN_TYPES


def test_other_codecs_are_left_to_pyarrow(tmp_path):
    rows = [{"record": "meta", "key": "k", "value": "v"}]
    path = write(tmp_path / "r.parquet", [rows], compression="snappy")
    assert small_parquet.open_small(str(path)) is None
    assert [b.column("value").to_pylist() for b in open_batches(str(path))] == [["v"]]


def test_large_files_are_left_to_pyarrow(tmp_path, monkeypatch):
    path = write(tmp_path / "r.parquet", [[{"record": "meta", "key": "k", "value": "v"}]])
    monkeypatch.setattr(small_parquet, "SMALL_FILE_BYTES", path.stat().st_size - 1)
    assert small_parquet.open_small(str(path)) is None


def test_a_fifo_is_not_waited_on(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done: list[object] = []
    t = threading.Thread(target=lambda: done.append(small_parquet.open_small(str(fifo))),
                         daemon=True)
    t.start()
    t.join(5)
    assert done == [None]


def test_not_a_recording_is_refused_like_pyarrow_refuses_it(tmp_path):
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"record": ["x"]}), other, compression="zstd")
    with pytest.raises(RecordingFormatError, match="not an ebpf-record recording"):
        small_parquet.open_small(str(other))
    wrong = tmp_path / "wrong.parquet"
    schema = SCHEMA.set(SCHEMA.get_field_index("pid"), pa.field("pid", pa.string()))
    cols = {n: pa.nulls(1, schema.field(n).type) for n in schema.names}
    cols["record"] = pa.array(["meta"])
    pq.write_table(pa.table(cols, schema=schema), wrong, compression="zstd")
    with pytest.raises(RecordingFormatError, match="column 'pid' is of type string, not int32"):
        small_parquet.open_small(str(wrong))


def test_corrupt_files_are_recording_errors(tmp_path):
    """Every byte flip or cut either reads as some rows or is a RecordingFormatError with a
    one-line message: nothing else escapes (a recording comes from another host)."""
    rows = [{"record": "sample", "pid": 5, "comm": "sort", "user_stack": [1, 2, 3],
             "phdrs": [{"offset": 0, "vaddr": 0, "filesz": 1, "memsz": 1, "flags": 5}]},
            {"record": "window", "window_start_ns": 1, "window_end_ns": 2}] * 20
    good = write(tmp_path / "good.parquet", [rows]).read_bytes()
    rnd = random.Random(3)
    bad = tmp_path / "bad.parquet"
    outcomes = {"read": 0, "error": 0}
    for trial in range(400):
        data = bytearray(good)
        if trial % 4 == 0:
            data = data[:rnd.randrange(len(data))]
        else:
            for _ in range(rnd.randrange(1, 4)):
                data[rnd.randrange(4, len(data))] = rnd.randrange(256)
        bad.write_bytes(bytes(data))
        try:
            batches = small_parquet.open_small(str(bad))
            for b in batches or []:
                for name in SCHEMA.names:
                    b.column(name).to_pylist()
            outcomes["read"] += 1
        except RecordingFormatError as exc:
            assert "\n" not in str(exc) and str(bad) in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 100  # the mutations did reach the decoder's checks


def test_symbolizing_a_small_recording_does_not_load_pyarrow(tmp_path):
    rows = [{"record": "meta", "key": "sample_rate_hz", "value": "100"},
            {"record": "process", "pid": 7, "maps_seq": 0, "time_ns": 1, "comm": "x"},
            {"record": "sample", "pid": 7, "comm": "x", "count": 3, "user_stack": [0x1234],
             "kernel_stack": [], "window_start_ns": 1, "window_end_ns": 2},
            {"record": "window", "window_start_ns": 1, "window_end_ns": 2}]
    path = write(tmp_path / "r.parquet", [rows])
    code = ("import sys\nfrom symbolizer.cli import main\n"
            "try:\n    main([sys.argv[1]])\nexcept SystemExit:\n    pass\n"
            "print('PYARROW' if 'pyarrow' in sys.modules else 'NO-PYARROW', file=sys.stderr)\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60)
    assert [line for line in out.stdout.splitlines() if line.startswith("x;")
            and line.endswith(" 3")], out.stdout + out.stderr
    assert "NO-PYARROW" in out.stderr, out.stderr


def test_a_recording_resaved_by_duckdb_reads_as_pyarrow_reads_it(tmp_path):
    """Another writer (DuckDB: PLAIN_DICTIONARY, its own page layout) gives the same rows, or
    is left to pyarrow: either way what the symbolizer sees is pyarrow's reading."""
    duckdb = pytest.importorskip("duckdb")
    rows = [{"record": "sample", "pid": i % 7, "count": i, "user_stack": [i, 2**64 - 1 - i],
             "phdrs": [{"offset": i, "vaddr": 0, "filesz": 1, "memsz": 2, "flags": 5}, None],
             "comm": ["sort", "xz", None][i % 3]} for i in range(500)]
    src = write(tmp_path / "r.parquet", [rows])
    out = tmp_path / "duck.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_parquet('{src}')) TO '{out}' (FORMAT parquet, "
        "COMPRESSION zstd, KV_METADATA {'ebpf_profiler.schema_version': '2'})")
    want = pq.read_table(out)
    got = list(open_batches(str(out)))
    for name in SCHEMA.names:
        assert [v for b in got for v in b.column(name).to_pylist()] == \
            want.column(name).to_pylist(), name


def test_a_small_recording_is_read_once_for_both_passes(tmp_path, monkeypatch):
    """The symbolizer goes through a file twice (snapshots, then samples): a small one is
    read and its footer parsed once, and both passes see every window."""
    import recording.batches as batches
    from symbolizer.engine import Engine
    from symbolizer.options import SymbolizeOptions
    from symbolizer.reading import drain_windows

    rows = [{"record": "process", "pid": 7, "maps_seq": 0, "time_ns": 1, "comm": "x"},
            {"record": "sample", "pid": 7, "comm": "x", "count": 3, "user_stack": [0x1234],
             "kernel_stack": [], "window_start_ns": 1, "window_end_ns": 2},
            {"record": "window", "window_start_ns": 1, "window_end_ns": 2}]
    path = write(tmp_path / "r.parquet", [rows, rows])
    opened: list[str] = []

    def counting(p: str):
        opened.append(p)
        return small_parquet.open_small(p)

    monkeypatch.setattr(batches, "open_small", counting)
    engine = Engine(SymbolizeOptions(cache_dir=None))
    windows = [w for got in drain_windows(engine, str(path), stream=False) for w in got]
    assert opened == [str(path)]
    assert sum(p.total for w in windows for p in w) == 6
