"""Batches of a recording for readers that take it column by column (the symbolizer): a small
Parquet file without loading pyarrow (recording/small_parquet.py), anything else, streams
included, through pyarrow (recording/reader.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from recording.columns import RowBatch
from recording.small_parquet import open_small


class _Reread:
    """A file read anew by pyarrow at each pass, so a long recording never has to fit in
    memory; a stream can be gone through once only."""

    def __init__(self, source: str, stdin: BinaryIO | None) -> None:
        self.source, self.stdin = source, stdin

    def __iter__(self) -> Iterator[RowBatch]:
        from recording.reader import iter_batches  # here: it loads pyarrow

        return iter_batches(self.source, self.stdin)


def open_batches(source: str, stdin: BinaryIO | None = None) -> Iterable[RowBatch]:
    """The batches of a recording, in the order they were written (`-`: the stream on
    stdin). A file's may be gone through more than once; a small one is read only once."""
    if source != "-":
        small = open_small(source)
        if small is not None:
            return small
    return _Reread(source, stdin)
