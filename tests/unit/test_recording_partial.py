"""The recording file while it is written: private, exclusive, and readable up to the last
complete drain window whatever kills the writer (SIGKILL, a full disk)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from recording.errors import OutputError
from recording.reader import iter_batches, read_table
from recording.writer import StreamRecordingWriter, open_writer
from tests.conftest import tool
from tests.helpers.partial_recording import META, partials, window, windows_of


def write(out: Path, n_windows: int) -> None:
    w = open_writer(str(out))
    w.write_rows(META)
    for i in range(n_windows):
        w.write_rows(window(i))
        w.end_window()
    w.close()


def test_recording_and_partial_are_private(tmp_path):
    """Recordings hold kernel addresses (a KASLR bypass): 0600, as perf.data."""
    out = tmp_path / "run.parquet"
    old = os.umask(0o022)
    try:
        w = open_writer(str(out))
        w.write_rows(META + window(0))
        w.end_window()
        [partial] = partials(tmp_path)
        assert stat.S_IMODE(partial.stat().st_mode) == 0o600
        w.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert windows_of(out) == [0]
    assert partials(tmp_path) == []


def test_the_partial_name_is_unpredictable_and_names_its_recording(tmp_path):
    out = tmp_path / "run.parquet"
    names = set()
    for _ in range(2):
        w = open_writer(str(out))
        [partial] = partials(tmp_path)
        assert partial.name.startswith(".run.parquet.") and partial.name != ".run.parquet.partial"
        names.add(partial.name)
        w.close()
    assert len(names) == 2


def test_a_symlink_at_the_old_partial_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "run.parquet"
    Path(f"{out}.partial").symlink_to(victim)
    write(out, 2)
    assert victim.read_text() == "precious"
    assert windows_of(out) == [0, 1]


def test_two_writers_with_the_same_out_do_not_corrupt_each_other(tmp_path):
    out = tmp_path / "run.parquet"
    a, b = open_writer(str(out)), open_writer(str(out))
    for w, first in ((a, 0), (b, 10)):
        w.write_rows(META + window(first))
        w.end_window()
    for w, second in ((a, 1), (b, 11)):
        w.write_rows(window(second))
        w.end_window()
    a.close()
    assert windows_of(out) == [0, 1]
    b.close()
    assert windows_of(out) == [10, 11]  # the last to finish wins, whole


KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from recording.writer import open_writer
from tests.helpers.partial_recording import META, window
w = open_writer(sys.argv[1])
w.write_rows(META)
for i in range(3):
    w.write_rows(window(i))
    w.end_window()
w.write_rows(window(3))  # an open window: lost, as promised
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_partial(tmp_path: Path) -> Path:
    out = tmp_path / "run.parquet"
    root = str(Path(__file__).resolve().parents[2])
    r = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out), root])
    assert r.returncode == -signal.SIGKILL
    assert not out.exists()
    [partial] = partials(tmp_path)
    return partial


def test_sigkill_keeps_every_completed_window(tmp_path):
    partial = killed_partial(tmp_path)
    assert windows_of(partial) == [0, 1, 2]  # readers take the partial stream as it is


def test_recover_turns_a_partial_into_a_parquet_recording(tmp_path):
    partial = killed_partial(tmp_path)
    r = subprocess.run([tool("ebpf-record"), "--recover", str(partial)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run.parquet"  # the name the partial was for
    assert out.read_bytes()[:4] == b"PAR1"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert windows_of(out) == [0, 1, 2]
    assert f"recovered 3 windows from {partial} into {out}" in r.stderr
    stats = [r for r in read_table(str(out)).to_pylist() if r["record"] == "stats"]
    assert {(s["key"], s["value"]) for s in stats} >= {("stop_reason", "recovered")}
    # an existing recording is not overwritten by a guessed name
    again = subprocess.run([tool("ebpf-record"), "--recover", str(partial)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 5 and "exists" in again.stderr and "--out" in again.stderr
    other = tmp_path / "other.parquet"
    r = subprocess.run([tool("ebpf-record"), "--recover", str(partial), "--out", str(other)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert windows_of(other) == [0, 1, 2]


def test_a_batch_cut_short_is_dropped_with_one_note(tmp_path):
    partial = killed_partial(tmp_path)
    size = partial.stat().st_size
    with open(partial, "r+b") as f:
        f.truncate(size - 40)  # the third window's batch loses its end
    r = subprocess.run([tool("ebpf-record"), "--recover", str(partial), "--out",
                        str(tmp_path / "r.parquet")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "cut short" in line]
    assert len(notes) == 1, r.stderr
    assert windows_of(tmp_path / "r.parquet") == [0, 1]


def test_recover_refuses_what_is_not_a_partial_recording(tmp_path):
    junk = tmp_path / ".run.parquet.abcdefgh.partial"
    junk.write_bytes(b"PAR1")  # what the old recorder left after SIGKILL
    r = subprocess.run([tool("ebpf-record"), "--recover", str(junk)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr


def test_an_aborted_writer_without_a_window_removes_its_partial(tmp_path):
    w = open_writer(str(tmp_path / "run.parquet"))
    w.write_rows(META)
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_full_stdout_is_an_output_error():
    with open("/dev/full", "wb", buffering=0) as full:
        w = StreamRecordingWriter(full)
        w.write_rows(META + window(0))
        with pytest.raises(OutputError, match="disk full"):
            w.end_window()


def test_readers_take_a_partial_as_a_stream(tmp_path):
    partial = killed_partial(tmp_path)
    assert sum(b.num_rows for b in iter_batches(str(partial))) == 1 + 3 * 4


def test_abort_after_a_complete_close_keeps_nothing(tmp_path):
    out = tmp_path / "run.parquet"
    w = open_writer(str(out))
    w.write_rows(META + window(0))
    w.end_window()
    w.close()
    assert w.abort() is None
    assert windows_of(out) == [0]


def test_a_stream_compresses_large_windows_only_and_reads_back_whole():
    """A quiet host's window of a few rows goes out as it is (zstd per buffer costs more CPU
    than it saves there); a busy one's is compressed; readers see every row either way."""
    import io

    import pyarrow as pa

    from recording.schema import rows_to_batch

    sink = io.BytesIO()
    w = StreamRecordingWriter(sink)
    sizes = [3, 400, 2]
    for i, n in enumerate(sizes):
        w.write_rows(META * (i == 0) + window(i, samples=n))
        w.end_window()
    w.close()
    data = sink.getvalue()
    read = pa.ipc.open_stream(data).read_all()
    assert read.num_rows == 1 + sum(n + 1 for n in sizes)
    assert [r["count"] for r in read.to_pylist() if r["record"] == "window"] == sizes
    # body bytes per batch message against the same rows uncompressed
    messages = pa.ipc.MessageReader.open_stream(data)
    bodies = [m.body.size for m in messages if m.type == "record batch"]
    plain = [pa.ipc.read_message(rows_to_batch(META * (i == 0) + window(i, samples=n))
                                 .serialize()).body.size for i, n in enumerate(sizes)]
    assert bodies[0] == plain[0] and bodies[2] == plain[2]  # as they are
    assert bodies[1] * 3 < plain[1]  # compressed
