"""A recording into closed drain windows, through the Engine: the read loop of
`ebpf-symbolize` and of `ebpf-upload RECORDING`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from profiles.model import Profile
from recording.batches import open_batches
from symbolizer.engine import Engine


def drain_windows(engine: Engine, source: str, stream: bool, stdin: BinaryIO | None = None
                  ) -> Iterator[list[list[Profile]]]:
    """Closed drain windows, batch by batch; engine.finish() gives the last ones. A file is
    read twice: first for its processes, mappings and objects (a snapshot may be written after
    the samples it serves), then for samples; a stream once, window by window, so output
    follows input. `stdin`: the stream to read for source "-" (default sys.stdin)."""
    batches = open_batches(source, stdin)
    if not stream:
        for batch in batches:
            engine.feed_metadata(batch)
        for batch in batches:
            yield engine.feed(batch, metadata=False)
    else:
        for batch in batches:
            yield engine.feed(batch)


def recording_start(engine: Engine, first: Profile) -> int:
    """Where `+10s` counts from: the recorder's start, else the first window's."""
    try:
        return int(engine.meta["started_ns"])
    except (KeyError, ValueError):
        return first.start_ns
