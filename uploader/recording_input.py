"""A recording as ebpf-upload's input: symbolized in-process with the symbolizer's library.

Folded text carries frame names only. To send pprof that keeps what a server with debug info
needs to symbolize on its side (mapping build IDs, location addresses, as Pyroscope v1 reads
them), `ebpf-upload --format pprof run.parquet` reads the recording itself: each drain window
becomes a Block that carries the symbolizer's Profile (frames with object, build ID, address)
beside its folded stacks.
"""

from __future__ import annotations

from collections.abc import Iterator

from recording.reader import PARQUET_MAGIC, iter_batches
from symbolizer.model import Profile
from uploader.folded import Block

ARROW_STREAM_MAGIC = b"\xff\xff\xff\xff"  # the IPC continuation marker that opens a stream


def is_recording(path: str) -> bool:
    if path == "-":
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in (PARQUET_MAGIC, ARROW_STREAM_MAGIC)


def recording_blocks(path: str) -> Iterator[Block]:
    from symbolizer.engine import Engine
    from symbolizer.options import SymbolizeOptions
    from symbolizer.sinks.folded import folded_lines

    engine = Engine(SymbolizeOptions())
    # A file is read twice, as ebpf-symbolize does: snapshots first, then samples.
    for batch in iter_batches(path):
        engine.feed_metadata(batch)
    windows: list[list[Profile]] = []
    for batch in iter_batches(path):
        windows += engine.feed(batch, metadata=False)
    windows += engine.finish()
    for window in windows:
        for p in window:
            if not p.stacks:
                continue
            stacks = {}
            for line in folded_lines(p):
                stack, count = line.rsplit(" ", 1)
                stacks[stack] = int(count)
            yield Block(p.start_ns, p.end_ns, p.sample_rate, dict(p.labels), stacks, profile=p)
