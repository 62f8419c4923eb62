"""Writers: a Parquet file (zstd) or an Arrow IPC stream (one batch per drain) for pipes."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from recording.errors import OutputError
from recording.schema import SCHEMA, rows_to_batch

# Rows buffered before a Parquet row group is written: enough for good compression, small
# enough that a killed recorder loses little (Ctrl-C and SIGTERM still close the file).
ROW_GROUP_ROWS = 50_000


class RecordingWriter(Protocol):
    def write_rows(self, rows: list[dict]) -> None: ...
    def end_window(self) -> None:
        """A drain window is complete: a stream sends it now, a file may keep buffering."""
    def flush(self) -> None: ...
    def close(self) -> None: ...
    @property
    def bytes_written(self) -> int: ...


def check_writable(out: str) -> None:
    """Fail before any BPF is loaded if `out` cannot be created."""
    if out == "-":
        return
    parent = os.path.dirname(os.path.abspath(out)) or "."
    if os.path.isdir(out):
        raise OutputError(f"--out {out} is a directory; give a file name such as {out}/run.parquet")
    if not os.path.isdir(parent):
        raise OutputError(f"--out {out}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (os.path.exists(out) and not os.access(out, os.W_OK)):
        raise OutputError(f"--out {out} is not writable; choose a writable path")


class ParquetRecordingWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        # Write to a temporary name and rename at close, so a reader never sees half a file.
        self._tmp = f"{path}.partial"
        try:
            self._writer = pq.ParquetWriter(self._tmp, SCHEMA, compression="zstd")
        except OSError as exc:
            raise OutputError(f"cannot write --out {path}: {exc.strerror or exc}") from None
        self._rows: list[dict] = []

    def write_rows(self, rows: list[dict]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= ROW_GROUP_ROWS:
            self.flush()

    def end_window(self) -> None:
        # A row group per drain would cost a Parquet write_table call (~7 ms) every second and
        # compress worse; row groups are cut by size instead.
        pass

    def flush(self) -> None:
        if self._rows:
            self._writer.write_batch(rows_to_batch(self._rows))
            self._rows = []

    def close(self) -> None:
        self.flush()
        self._writer.close()
        os.replace(self._tmp, self.path)

    @property
    def bytes_written(self) -> int:
        for p in (self.path, self._tmp):
            if os.path.exists(p):
                return os.path.getsize(p)
        return 0


class StreamRecordingWriter:
    """Arrow IPC stream: each `flush` sends one batch, so a downstream reader sees every drain."""

    def __init__(self, sink: BinaryIO | None = None) -> None:
        self._sink = sink if sink is not None else sys.stdout.buffer
        self._counting = _CountingSink(self._sink)
        # zstd-compressed batches: about 5x less through the pipe; Arrow readers decompress
        # transparently.
        self._writer = pa.ipc.new_stream(
            self._counting, SCHEMA, options=pa.ipc.IpcWriteOptions(compression="zstd")
        )
        self._rows: list[dict] = []

    def write_rows(self, rows: list[dict]) -> None:
        self._rows.extend(rows)

    def end_window(self) -> None:
        self.flush()

    def flush(self) -> None:
        if self._rows:
            self._writer.write_batch(rows_to_batch(self._rows))
            self._rows = []
        self._sink.flush()

    def close(self) -> None:
        self.flush()
        self._writer.close()
        self._sink.flush()

    @property
    def bytes_written(self) -> int:
        return self._counting.count


class _CountingSink:
    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self.count = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        n = self._sink.write(data)
        self.count += len(data)
        return n if n is not None else len(data)

    def flush(self) -> None:
        self._sink.flush()

    def close(self) -> None:
        self.closed = True


def open_writer(out: str) -> RecordingWriter:
    if out == "-":
        return StreamRecordingWriter()
    return ParquetRecordingWriter(out)
