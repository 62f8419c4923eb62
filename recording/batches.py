"""Batches of a recording for readers that take it column by column (the symbolizer): a small
Parquet file without loading pyarrow (recording/small_parquet.py), anything else, streams
included, through pyarrow (recording/reader.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from recording.columns import RowBatch
from recording.small_parquet import open_small


def iter_row_batches(source: str, stdin: BinaryIO | None = None) -> Iterator[RowBatch]:
    """Batches of a recording, in the order they were written (`-`: the stream on stdin)."""
    if source != "-":
        small = open_small(source)
        if small is not None:
            return small
    from recording.reader import iter_batches

    return iter_batches(source, stdin)
