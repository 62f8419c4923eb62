"""Writers: a Parquet recording (zstd) or an Arrow IPC stream (one batch per drain) for pipes.

A Parquet file cannot be read until its footer is written, so a file recording is first an
Arrow IPC stream in a private temporary file and becomes Parquet at close
(recording/partial.py): a killed recorder loses at most the window it was in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import BinaryIO, Protocol

import pyarrow as pa

from recording.errors import OutputError
from recording.partial import PARTIAL_SUFFIX, create_temp, problem, stream_to_parquet
from recording.schema import SCHEMA, Row, rows_to_batch


class RecordingWriter(Protocol):
    def write_rows(self, rows: Sequence[Row]) -> None: ...
    def end_window(self) -> None:
        """A drain window is complete: it is sent (stream) or made durable (file) now."""
    def close(self) -> None: ...
    def abort(self) -> str | None:
        """Stop without completing; the path of what was kept for `--recover`, if anything."""
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


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int | None: ...
    def flush(self) -> None: ...


# Batches smaller than this (Arrow's in-memory bytes) go out uncompressed. Arrow compresses
# each of a batch's ~90 buffers with a fresh zstd context (~10 us each, cpp/src/arrow/util/
# compression_zstd.cc), and a window of a quiet host is tens of rows: 0.5-1 ms of CPU every
# second for no saving (44 columns of 5 rows: 5.8 KB compressed, 6.8 KB not). From ~50 rows
# on zstd pays (50 rows: 6.6 KB against 20 KB).
COMPRESS_FROM_BYTES = 16 << 10


class _Batches:
    """Rows to Arrow IPC batches on a sink, one batch per flush; zstd-compressed when large
    (about 5x less through a pipe or onto disk). An IPC stream says per batch whether and how
    its body is compressed (format/Message.fbs, RecordBatch.compression), so one stream may
    mix both, and Arrow readers decompress transparently. Two pyarrow writers, one per
    choice, write into captures; their bytes reach the sink in order, the schema message once.
    Single-threaded: Arrow's thread pool costs more than the compression of a window saves."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = _CountingSink(sink)
        self._schema = SCHEMA.serialize().to_pybytes()
        self._schema_sent = False
        self._plain = _Capture(SCHEMA, pa.ipc.IpcWriteOptions(use_threads=False))
        self._zstd = _Capture(SCHEMA, pa.ipc.IpcWriteOptions(compression="zstd",
                                                             use_threads=False))
        self._rows: list[Row] = []

    def add(self, rows: Sequence[Row]) -> None:
        self._rows.extend(rows)

    def flush(self) -> None:
        if self._rows:
            batch = rows_to_batch(self._rows)
            self._send((self._zstd if batch.nbytes >= COMPRESS_FROM_BYTES else self._plain)
                       .write_batch(batch))
            self._rows = []
        self.sink.flush()

    def close(self) -> None:
        self.flush()
        self._send(self._plain.close())  # the end-of-stream marker
        self._zstd.close()
        self.sink.flush()

    def _send(self, data: bytes) -> None:
        # a writer's first output starts with the schema message (pyarrow writes it lazily)
        if data.startswith(self._schema):
            if self._schema_sent:
                data = data[len(self._schema):]
            self._schema_sent = True
        self.sink.write(data)


class _Capture:
    """A pyarrow stream writer whose output is taken after each call."""

    def __init__(self, schema: pa.Schema, options: pa.ipc.IpcWriteOptions) -> None:
        self._out = bytearray()
        self.closed = False
        self._writer = pa.ipc.new_stream(self, schema, options=options)

    def write(self, data: bytes | memoryview) -> int:
        self._out += data
        return len(data)

    def flush(self) -> None:
        pass

    def write_batch(self, batch: pa.RecordBatch) -> bytes:
        self._writer.write_batch(batch)
        return self._take()

    def _take(self) -> bytes:
        data, self._out = bytes(self._out), bytearray()
        return data

    def close(self) -> bytes:
        self._writer.close()
        self.closed = True
        return self._take()


class StreamRecordingWriter:
    """`--out -`: each window is one batch on stdout, so a downstream reader sees every drain."""

    def __init__(self, sink: BinaryIO | None = None) -> None:
        self._batches = _Batches(sink if sink is not None else sys.stdout.buffer)

    def write_rows(self, rows: Sequence[Row]) -> None:
        self._batches.add(rows)

    def end_window(self) -> None:
        self._guarded(self._batches.flush)

    def close(self) -> None:
        self._guarded(self._batches.close)

    def abort(self) -> str | None:
        return None  # what was sent belongs to the reader of the pipe

    def _guarded(self, write: Callable[[], None]) -> None:
        try:
            write()
        except BrokenPipeError:
            raise  # the reader went away: the recorder stops quietly (exit 141)
        except OSError as exc:
            raise OutputError(f"cannot write --out - (stdout): {problem(exc)}") from None

    @property
    def bytes_written(self) -> int:
        return self._batches.sink.count


class FileRecordingWriter:
    """`--out FILE`: the partial stream (recording/partial.py), then Parquet at close."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd, self.partial = create_temp(path, PARTIAL_SUFFIX)
        except OSError as exc:
            raise OutputError(f"cannot write --out {path}: {problem(exc)}") from None
        self._file = _FdSink(self._fd)
        self._batches = _Batches(self._file)
        self._durable = 0  # bytes up to the end of the last completed window
        self.windows = 0
        self._done = False
        self._converted = False
        self._size = 0

    def write_rows(self, rows: Sequence[Row]) -> None:
        self._batches.add(rows)

    def end_window(self) -> None:
        try:
            self._batches.flush()
            # fdatasync once per window (1 s by default): what SIGKILL spares, a power loss
            # spares too. It costs one journal commit per window, off the sampling path.
            os.fdatasync(self._fd)
        except OSError as exc:
            self._fail(exc)
        self._durable = self._file.offset
        self.windows += 1

    def close(self) -> None:
        try:
            self._batches.close()
        except OSError as exc:
            self._fail(exc)
        os.close(self._fd)
        self._done = True
        stream_to_parquet(self.partial, self.path)
        self._size = os.path.getsize(self.path)
        with contextlib.suppress(OSError):
            os.unlink(self.partial)
        self._converted = True

    def abort(self) -> str | None:
        if self._converted:
            return None  # everything is in the recording
        if self._done:
            return None if self.windows == 0 else self.partial
        self._done = True
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._durable)  # a cut batch would only be dropped later
        os.close(self._fd)
        if self.windows == 0:
            with contextlib.suppress(OSError):
                os.unlink(self.partial)  # nothing in it worth keeping
            return None
        return self.partial

    def _fail(self, exc: OSError) -> None:
        """Keep what the completed windows wrote, nothing else, and say so in one line."""
        kept = self.abort()
        what = problem(exc)
        if kept is None:
            raise OutputError(f"{what} writing {self.partial}: no drain window was complete, "
                              "nothing was kept") from None
        hint = "free space, then run" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "run"
        raise OutputError(
            f"{what} writing {self.partial}; it keeps the {self.windows} completed "
            f"windows: {hint} `ebpf-record --recover {kept}`") from None

    @property
    def bytes_written(self) -> int:
        return self._size or self._file.offset


class _FdSink:
    """Collects what the IPC writer produces and writes it with os.write at flush: a window's
    batch goes out in one piece, and a failed write leaves the file at a known length."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = bytearray()
        self.offset = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self._pending += data
        return len(data)

    def flush(self) -> None:
        data, self._pending = bytes(self._pending), bytearray()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self.offset += n
            view = view[n:]

    def close(self) -> None:
        self.closed = True


class _CountingSink:
    def __init__(self, sink: _Sink) -> None:
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
    return FileRecordingWriter(out)
