"""A recording as ebpf-upload's input: symbolized in-process with the symbolizer's library.

`ebpf-upload --format pprof run.parquet` reads the recording itself, so that pprof keeps what
a server with debug info needs to symbolize on its side (mapping build IDs, location
addresses, as Pyroscope v1 reads them; folded text from ebpf-symbolize carries them in its
frames lines, profiles/folded_frames.py): each drain window
gives the symbolizer's Profiles (frames with object, build ID, address), which the uploader
takes as they are, whatever the body format.
"""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Iterator

from profiles.folded import WindowEnd
from profiles.model import Profile
from recording.errors import ProfilerError
from recording.reader import PARQUET_MAGIC
from symbolizer.options import SymbolizeOptions

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


def recording_profiles(path: str, options: SymbolizeOptions) -> Iterator[Profile]:
    """The Profiles of a recording file, symbolized as `ebpf-symbolize` would with `options`
    (ebpf-upload takes the same --debug-dir, --sysroot, --debuginfod-url ... flags)."""
    from symbolizer.engine import Engine
    from symbolizer.reading import drain_windows

    engine = Engine(options, labeler=_labeler())
    windows = [w for closed in drain_windows(engine, path, stream=False) for w in closed]
    for window in windows + engine.finish():
        yield from (p for p in window if p.stacks)


def _labeler():
    """Service labels as ebpf-symbolize gives them (PYROSCOPE_KUBERNETES_NODE,
    PYROSCOPE_ONLY_SERVICES, else container ID / systemd unit from the cgroup)."""
    from discovery.settings import discovery_for

    return discovery_for("ebpf-upload").labels_for


class RecordingStreamReader(threading.Thread):
    """Continuous mode fed by `ebpf-record --out -` directly: symbolizes the Arrow stream on
    stdin in this thread and queues Profiles and WindowEnds for the uploader's main loop; None
    marks the end of input, a ProfilerError a stream that could not be read."""

    def __init__(self, head: bytes, fd: int, out: queue.Queue, options: SymbolizeOptions
                 ) -> None:
        super().__init__(name="ebpf-upload-recording", daemon=True)
        self.options = options
        self.head = head
        self.fd = fd
        self.out = out
        self.labeler = _labeler()  # in the caller's thread: a bad setting fails at start

    def run(self) -> None:
        from symbolizer.engine import STREAM_FORGET_AFTER_NS, Engine
        from symbolizer.reading import drain_windows

        engine = Engine(self.options, labeler=self.labeler,
                        forget_after_ns=STREAM_FORGET_AFTER_NS)
        stream = io.BufferedReader(_Prefixed(self.head, self.fd))
        try:
            for closed in drain_windows(engine, "-", stream=True, stdin=stream):
                for window in closed:
                    for p in window:
                        if p.stacks:
                            self.out.put(p)
                    if window:
                        self.out.put(WindowEnd(window[0].end_ns))
        except ProfilerError as exc:
            self.out.put(exc)
        finally:
            self.out.put(None)


class _Prefixed(io.RawIOBase):
    """The bytes already read from the pipe (to see what it carries), then the pipe."""

    def __init__(self, head: bytes, fd: int) -> None:
        self.head = head
        self.fd = fd

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = os.read(self.fd, len(b))
        b[: len(data)] = data
        return len(data)
