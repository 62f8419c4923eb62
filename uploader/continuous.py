"""Continuous mode: `ebpf-record --out - | ebpf-symbolize - | ebpf-upload -`.

The main thread reads stdin without blocking for long (select with a timeout) and closes
upload windows as the stream moves past them: at each `# ebpf-profiler-window-end`, at a
header of a later window, or, when the input has been idle for a while, once the window's end
is in the past by the wall clock. A sender thread uploads closed windows so a slow or absent
server never blocks the pipe (which would stall the recorder's drains upstream).

Stopping: end of input (an upstream command stopped) flushes the last, partial window and
exits 0 with a message. SIGINT/SIGTERM wait briefly for upstream's own last window (Ctrl-C
reaches the whole pipeline), then flush and exit 0; a second signal stops at once, spooling
whatever was not sent.
"""

from __future__ import annotations

import logging
import os
import queue
import selectors
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType

from profiles.folded import Block, Event, FoldedParser, WindowEnd
from profiles.model import Profile
from profiles.windows import WindowGrouper
from recording.errors import ProfilerError
from uploader.options import UploadOptions
from uploader.recording_input import ARROW_STREAM_MAGIC, RecordingStreamReader, StreamEvent
from uploader.session import Session
from uploader.source import BlockFiller

log = logging.getLogger("ebpf-upload")

IDLE_FLUSH_S = 5.0  # no input this long: close windows whose end has passed
STOP_GRACE_S = 3.0  # after a signal, wait this long for upstream's last window and EOF


class _Sender(threading.Thread):
    def __init__(self, session: Session) -> None:
        super().__init__(name="ebpf-upload-sender", daemon=True)
        self.session = session
        self.queue: queue.Queue[Profile | None] = queue.Queue()
        self.error: ProfilerError | None = None
        self.failed = threading.Event()

    def run(self) -> None:
        try:
            self.session.deliverer.drain_spool()
            while True:
                w = self.queue.get()
                if w is None:
                    return
                self.session.send_window(w)
                log.debug("uploaded window [%d, %d) %s", w.start_ns, w.end_ns, w.labels)
        except ProfilerError as exc:
            self.error = exc
            self.failed.set()


class StreamUploader:
    def __init__(self, opts: UploadOptions, fd: int = 0) -> None:
        self.opts = opts
        self.fd = fd
        self.parser = FoldedParser("stdin")
        self.filler = BlockFiller(opts)
        self.batcher = WindowGrouper(int(opts.upload_rate_s * 1e9))
        self.session = Session(opts)
        self.sender = _Sender(self.session)
        self.stop_signal: str | None = None
        self.stop_deadline = 0.0
        self.blocks = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop_signal is None:
            self.stop_signal = name
            self.stop_deadline = time.monotonic() + STOP_GRACE_S
        else:
            self.session.deliverer.abort.set()
            self.stop_deadline = 0.0

    def _handle(self, events: Sequence[Event | Profile]) -> None:
        for ev in events:
            if isinstance(ev, Block | Profile):
                p = self.filler.fill(ev)
                # a later window has begun: earlier ones are complete (the stream is in order)
                self._close(self.batcher.pop_complete(p.start_ns))
                self.batcher.add(p)
                self.blocks += 1
            elif isinstance(ev, WindowEnd) and ev.until_ns is not None:
                self._close(self.batcher.pop_complete(ev.until_ns))

    def _close(self, windows: list[Profile]) -> None:
        for w in windows:
            self.sender.queue.put(w)

    def _stopping(self) -> bool:
        return bool(self.stop_signal) and time.monotonic() >= self.stop_deadline

    def _idle(self, last_input: float) -> None:
        if time.monotonic() - last_input > IDLE_FLUSH_S:
            self._close(self.batcher.pop_complete(time.time_ns()))

    def _pump(self) -> str:
        """Read stdin until it ends, a signal's grace runs out or the sender fails; returns
        why it stopped. Folded text is parsed here; a recording stream (`ebpf-record --out -`
        piped straight in) is handed to a thread that symbolizes it."""
        eof = "end of input (the command before ebpf-upload stopped)"
        sel = selectors.DefaultSelector()
        sel.register(self.fd, selectors.EVENT_READ)
        buf = b""
        last_input = time.monotonic()
        first = True
        try:
            while not self.sender.failed.is_set():
                if self._stopping():
                    return f"{self.stop_signal}"
                if not sel.select(timeout=0.5):
                    self._idle(last_input)
                    continue
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    break
                if first and chunk.startswith(ARROW_STREAM_MAGIC):
                    sel.close()
                    return self._pump_recording(chunk) or eof
                first = False
                last_input = time.monotonic()
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._handle(self.parser.feed(line.decode("utf-8", "replace")))
            if buf:
                self._handle(self.parser.feed(buf.decode("utf-8", "replace")))
            return eof
        finally:
            sel.close()

    def _pump_recording(self, head: bytes) -> str | None:
        events: queue.Queue[StreamEvent] = queue.Queue()
        RecordingStreamReader(head, self.fd, events, self.opts.symbolize).start()
        last_input = time.monotonic()
        while not self.sender.failed.is_set():
            if self._stopping():
                return f"{self.stop_signal}"
            try:
                item = events.get(timeout=0.5)
            except queue.Empty:
                self._idle(last_input)
                continue
            if item is None:
                return None
            if isinstance(item, ProfilerError):
                raise item
            last_input = time.monotonic()
            self._handle([item])
        return None

    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.sender.start()
        last: list[Profile] = []
        bad_input: ProfilerError | None = None
        try:
            try:
                why = self._pump()
                self._handle(self.parser.close())
            except ProfilerError as exc:
                # unreadable input ends the run, but what arrived before it is sent (or
                # spooled) first: the open windows hold samples the recorder counted
                bad_input, why = exc, "bad input"
            last = self.batcher.pop_all()
            self._close(last)
        finally:
            self.sender.queue.put(None)
            self.sender.join()
            for s, h in old.items():
                signal.signal(s, h)
        if bad_input is not None:
            if self.sender.error is not None:
                log.error("%s", self.sender.error)
            log.info("input ended by an error; %s", self.session.summary())
            raise bad_input
        if self.sender.error is not None:
            raise self.sender.error
        if not self.blocks:
            log.warning("no profiles arrived on stdin before it ended; check the commands "
                        "before ebpf-upload in the pipe (their errors are above)")
        if last:
            log.info("stopping on %s: flushed the last window (%d sample(s)); %s",
                     why, sum(w.total for w in last), self.session.summary())
        else:
            log.info("stopping on %s; %s", why, self.session.summary())
        return 0


def run_stream(opts: UploadOptions, fd: int = 0) -> int:
    return StreamUploader(opts, fd).run()
