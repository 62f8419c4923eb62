"""Read a recording from a Parquet file or an Arrow IPC stream (`-` is stdin).

Both forms yield the same batches; a Parquet file is read row group by row group so a long
recording does not have to fit in memory at once. A stream in a file may end in a batch cut
short: that is the partial file of a recorder that was killed (`.OUT.XXXXXX.partial`, one batch
per completed drain window), and everything before the cut is read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.ipc as ipc

from recording.columns import SCHEMA_VERSION_KEY, check_version
from recording.errors import RecordingFormatError

PARQUET_MAGIC = b"PAR1"


def check_schema(schema: pa.Schema, source: str) -> None:
    meta = schema.metadata or {}
    check_version(meta.get(SCHEMA_VERSION_KEY), "record" in schema.names, source)
    # A recording may come from anywhere: readers rely on each column's type, so a file that
    # claims the version but not its columns is refused here, not deep in a reader.
    from recording.schema import SCHEMA

    for field in SCHEMA:
        i = schema.get_field_index(field.name)
        if i < 0 or not schema.field(i).type.equals(field.type):
            got = "missing" if i < 0 else f"of type {schema.field(i).type}"
            raise RecordingFormatError(
                f"{source}: column {field.name!r} is {got}, not {field.type}: not a recording "
                "ebpf-record wrote")


def iter_batches(source: str, stdin: BinaryIO | None = None) -> Iterator[pa.RecordBatch]:
    """Batches of a recording, in the order they were written."""
    if source == "-":
        yield from _iter_stream(stdin if stdin is not None else sys.stdin.buffer, "stdin")
        return
    try:
        with open(source, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise RecordingFormatError(f"{source}: no such file") from None
    except OSError as exc:
        raise RecordingFormatError(f"{source}: cannot read ({exc.strerror})") from None
    if head == PARQUET_MAGIC:
        yield from _iter_parquet(source)
    else:
        with open(source, "rb") as f:
            yield from _iter_stream(f, source, cut_ok=True)


def _open_parquet(path: str) -> Any:
    """A reader of a local Parquet file: schema_arrow, num_row_groups, read_row_group(i).

    pyarrow.parquet.ParquetFile is a thin wrapper over pyarrow._parquet.ParquetReader, but
    importing pyarrow.parquet imports pyarrow.fs, and with it ssl and the S3, GCS, HDFS and
    Azure file systems: some 20 ms of the start-up of symbolizing a small recording (issue 11
    item 10), for a local file that needs none of them. Should a pyarrow release move the
    reader, the public wrapper is used instead."""
    try:
        from pyarrow._parquet import ParquetReader
    except ImportError:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path)
    reader = ParquetReader()
    reader.open(path)
    return reader


def _iter_parquet(path: str) -> Iterator[pa.RecordBatch]:
    try:
        pf = _open_parquet(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordingFormatError(
            f"{path} is truncated or corrupt ({_short(exc)}); a killed recorder leaves "
            "`.FILE.XXXXXX.partial` next to FILE, which `ebpf-record --recover` turns into a "
            "recording"
        ) from None
    check_schema(pf.schema_arrow, path)
    try:
        for i in range(pf.num_row_groups):
            for batch in pf.read_row_group(i).to_batches():
                yield _valid(batch, f"{path} row group {i}")
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordingFormatError(f"{path} is corrupt at row group {i}: {_short(exc)}") from None


def iter_stream(f: BinaryIO, source: str, cut_ok: bool = False) -> Iterator[pa.RecordBatch]:
    """Batches of an Arrow IPC stream from an open binary file (`ebpf-record --out -`).
    cut_ok: a last batch cut short ends the stream with a note instead of an error."""
    return _iter_stream(f, source, cut_ok)


def _iter_stream(f: BinaryIO, source: str, cut_ok: bool = False) -> Iterator[pa.RecordBatch]:
    try:
        reader = ipc.open_stream(f)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordingFormatError(
            f"{source} is neither a Parquet recording nor an Arrow stream from "
            f"`ebpf-record --out -` ({_short(exc)})"
        ) from None
    check_schema(reader.schema, source)
    complete = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:  # the end-of-stream marker, or a file that ends between batches
            return
        except (pa.ArrowInvalid, OSError) as exc:
            if cut_ok and complete:
                _note_once(f"{source}: the last batch is cut short (the recorder was killed "
                           f"while writing it); dropped it, read the {complete} before it")
                return
            raise RecordingFormatError(
                f"{source}: stream ended mid-batch ({_short(exc)})"
            ) from None
        complete += 1
        yield _valid(batch, f"{source} batch {complete}")


def _valid(batch: pa.RecordBatch, where: str) -> pa.RecordBatch:
    """Neither Parquet nor IPC readers check that string columns hold UTF-8; a corrupt file
    would raise UnicodeDecodeError deep in a reader. Full validation checks it (and offsets)."""
    try:
        batch.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise RecordingFormatError(f"{where} is corrupt: {_short(exc)}") from None
    return batch


_noted: set[str] = set()


def _note_once(message: str) -> None:
    """A file is read more than once (the symbolizer reads snapshots first): say it once."""
    if message not in _noted:
        _noted.add(message)
        prog = os.path.basename(sys.argv[0]) or "ebpf-profiler"
        print(f"{prog}: note: {message}", file=sys.stderr)


def read_table(source: str) -> pa.Table:
    batches = list(iter_batches(source))
    if not batches:
        from recording.schema import SCHEMA

        return SCHEMA.empty_table()
    return pa.Table.from_batches(batches)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
