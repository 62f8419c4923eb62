"""The recorder's write of one drain window (recording/writer.py): rows to an Arrow batch and
an IPC message, as `--out -` and the partial file get them every second. A quiet host's
window is a few rows (test_window_write_8_rows: a process's samples and the window row); a
busy host's hundreds (test_window_write_400_rows), which is where zstd pays."""

from __future__ import annotations

import io

import pytest

from recording.writer import StreamRecordingWriter
from tests.helpers.partial_recording import META, window


class _Null(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        return len(data)


@pytest.mark.parametrize("samples", [7, 399], ids=["8_rows", "400_rows"])
def test_window_write(benchmark, samples: int) -> None:
    w = StreamRecordingWriter(_Null())  # type: ignore[arg-type]
    w.write_rows(META)
    rows = window(1, samples=samples)

    def one_window() -> None:
        w.write_rows(rows)
        w.end_window()

    benchmark(one_window)
    w.close()
