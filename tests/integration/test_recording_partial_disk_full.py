"""The partial recording on a full disk: a 1 MB tmpfs (mounting it needs root)."""

from __future__ import annotations

import random
import subprocess

import pytest

from recording.errors import OutputError
from recording.writer import open_writer
from tests.helpers.partial_recording import META, partials, window, windows_of


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs: writes fail with ENOSPC once it is full."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def noisy_window(i: int, rng: random.Random) -> list[dict]:
    """About 150 KB of incompressible stacks."""
    rows = window(i, samples=0)
    rows[:0] = [{"record": "sample", "window_start_ns": rows[-1]["window_start_ns"],
                 "window_end_ns": rows[-1]["window_end_ns"], "pid": 1, "count": 1,
                 "user_stack": [rng.getrandbits(63) for _ in range(60)]} for _ in range(300)]
    return rows


@pytest.mark.root  # to mount a tmpfs
def test_disk_full_keeps_the_completed_windows_and_says_where(small_fs):
    out = small_fs / "run.parquet"
    rng = random.Random(1)
    w = open_writer(str(out))
    w.write_rows(META)
    done = 0
    with pytest.raises(OutputError) as err:
        for i in range(100):
            w.write_rows(noisy_window(i, rng))
            w.end_window()
            done += 1
    assert done >= 2
    [partial] = partials(small_fs)
    message = str(err.value)
    assert "disk full" in message and str(partial) in message and "--recover" in message
    assert "\n" not in message
    w.abort()
    assert partials(small_fs) == [partial]  # kept: it holds the completed windows
    assert windows_of(partial) == list(range(done))  # cut back to the last complete window


@pytest.mark.root  # to mount a tmpfs
def test_disk_full_before_any_window_leaves_nothing(small_fs):
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * ((1 << 20) - 4096))
    out = small_fs / "run.parquet"
    w = open_writer(str(out))
    w.write_rows(META + noisy_window(0, random.Random(2)))
    with pytest.raises(OutputError, match="disk full"):
        w.end_window()
    w.abort()
    assert partials(small_fs) == []
