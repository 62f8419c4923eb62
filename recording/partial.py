"""The file a recording is written to until it is complete, and how it becomes a recording.

`ebpf-record --out run.parquet` writes `.run.parquet.XXXXXXXX.partial` next to run.parquet:
- private and exclusive: mkstemp creates it with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, under a
  random name, so a symlink planted at a guessable name is never followed and two recorders
  with the same --out never share a file;
- an Arrow IPC stream of the batches `--out -` sends, one per drain window, each written out
  and fdatasync'd when its window closes: SIGKILL, the OOM killer or a power loss keep every
  completed window, and readers drop a batch cut short at the end.
At close the stream is converted to Parquet in a second temporary file, which is fsync'd and
renamed over run.parquet; then the partial is removed. `ebpf-record --recover` runs the same
conversion on a partial that was left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recording.errors import OutputError, RecordingFormatError, UsageError
from recording.reader import PARQUET_MAGIC, iter_stream
from recording.schema import SCHEMA, Row, rows_to_batch

PARTIAL_SUFFIX = ".partial"
# Rows per Parquet row group: enough for good compression; the conversion holds about one row
# group of decoded batches at a time.
ROW_GROUP_ROWS = 50_000
# mkstemp's random part: 8 characters of [a-z0-9_] (tempfile._RandomNameSequence).
_PARTIAL_NAME = re.compile(r"^\.(?P<out>.+)\.[a-z0-9_]{8}" + re.escape(PARTIAL_SUFFIX) + "$")


def create_temp(out: str, suffix: str) -> tuple[int, str]:
    """(fd, path) of a new private file next to `out` (same file system, so it can be renamed
    over it): `.NAME.XXXXXXXX<suffix>`. mkstemp opens it O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW|
    O_CLOEXEC with mode 0600 and retries another random name if one exists."""
    directory, name = os.path.split(os.path.abspath(out))
    return tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)


def recording_name(partial: str) -> str | None:
    """run.parquet for .run.parquet.XXXXXXXX.partial (same directory), else None."""
    directory, name = os.path.split(partial)
    m = _PARTIAL_NAME.match(name)
    return os.path.join(directory, m["out"]) if m else None


def problem(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno == errno.EDQUOT:
        return "disk full (quota exceeded)"
    return exc.strerror or str(exc)


@dataclass
class Converted:
    batches: int = 0
    windows: int = 0


def stream_to_parquet(src: str, out: str, extra_rows: Sequence[Row] | None = None,
                      require_window: bool = False) -> Converted:
    """Write the Arrow IPC stream file `src` as the Parquet recording `out`.

    Raises RecordingFormatError when src cannot be read and OutputError when out cannot be
    written; either way nothing is left at out's temporary name and src is left alone."""
    try:
        source = open(src, "rb")  # noqa: SIM115 (closed below, after the temporary file)
    except OSError as exc:
        raise RecordingFormatError(f"{src}: cannot read ({exc.strerror})") from None
    done = Converted()
    tmp = None
    try:
        with source:
            fd, tmp = create_temp(out, ".converting")
            with open(fd, "wb") as f:
                writer = pq.ParquetWriter(f, SCHEMA, compression="zstd")
                pending: list[pa.RecordBatch] = []
                rows = 0
                for batch in iter_stream(source, src, cut_ok=True):
                    done.batches += 1
                    done.windows += pc.sum(pc.equal(batch.column("record"), "window")).as_py() or 0
                    pending.append(batch)
                    rows += batch.num_rows
                    if rows >= ROW_GROUP_ROWS:
                        writer.write_table(pa.Table.from_batches(pending, schema=SCHEMA))
                        pending, rows = [], 0
                if require_window and not done.windows:
                    raise RecordingFormatError(
                        f"{src} holds no complete drain window (the recorder stopped before "
                        "its first window ended); nothing to recover")
                if extra_rows:
                    pending.append(rows_to_batch(extra_rows))
                if pending:
                    writer.write_table(pa.Table.from_batches(pending, schema=SCHEMA))
                writer.close()
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
            tmp = None
            _fsync_dir(os.path.dirname(os.path.abspath(out)))
    except OSError as exc:
        raise OutputError(
            f"cannot write {out}: {problem(exc)}; the recording is kept in {src}: "
            f"{'free space, then run' if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 'run'} "
            f"`ebpf-record --recover {src} --out {out}`") from None
    except pa.ArrowInvalid as exc:
        raise RecordingFormatError(f"{src}: batches do not match the recording schema "
                                   f"({str(exc).splitlines()[0][:200]})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return done


def _fsync_dir(path: str) -> None:
    """Make the rename itself durable (ext4 and xfs need the directory synced for that)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def recover(partial: str, out: str | None) -> tuple[str, Converted]:
    """`ebpf-record --recover PARTIAL [--out OUT]`: the Parquet recording of what a killed
    recorder left. Without --out it goes where the recorder meant it to, if nothing is there."""
    target = out or recording_name(partial)
    if target is None:
        raise UsageError(f"{partial} is not named like a partial recording "
                         "(.NAME.XXXXXXXX.partial); give --out for the recovered recording")
    if out is None and os.path.lexists(target):
        raise OutputError(f"{target} exists; give --out to choose where the recording "
                          f"recovered from {partial} goes")
    try:
        with open(partial, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise RecordingFormatError(f"{partial}: cannot read ({exc.strerror})") from None
    if head == PARQUET_MAGIC:
        raise RecordingFormatError(
            f"{partial} is a Parquet file cut short (an ebpf-record older than the partial "
            "stream left it); it cannot be recovered")
    stats: list[Row] = [{"record": "stats", "key": "stop_reason", "value": "recovered"}]
    return target, stream_to_parquet(partial, target, extra_rows=stats, require_window=True)
