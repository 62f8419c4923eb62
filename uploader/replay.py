"""Replay: read whole files, then upload their windows in time order."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator

from cli_common.command import is_terminal
from profiles.folded import Block, parse_lines
from profiles.model import Profile
from profiles.windows import WindowGrouper
from recording.errors import DeliveryError, UsageError
from uploader.limits import MAX_AGE_S, check_age
from uploader.names import check_labels, merge_labels
from uploader.options import UploadOptions
from uploader.recording_input import is_recording, recording_profiles
from uploader.session import Session
from uploader.source import BlockFiller

log = logging.getLogger("ebpf-upload")


def _lines(path: str) -> Iterator[str]:
    if path == "-":
        yield from sys.stdin
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def read_windows(opts: UploadOptions) -> list[Profile]:
    filler = BlockFiller(opts)
    batcher = WindowGrouper(int(opts.upload_rate_s * 1e9))
    for path in opts.inputs:
        if is_recording(path):
            for p in recording_profiles(path, opts.symbolize):
                batcher.add(filler.fill(p))
            continue
        for ev in parse_lines(_lines(path), "stdin" if path == "-" else path):
            if isinstance(ev, Block):
                batcher.add(filler.fill(ev))
    return batcher.pop_all()


def retime(windows: list[Profile], rate_ns: int, now_ns: int | None = None) -> int:
    """Shift all windows so the last ends at the latest upload boundary <= now, keeping their
    spacing and their alignment (the shift is a whole number of upload windows).
    Returns the shift in ns."""
    if not windows:
        return 0
    now_ns = time.time_ns() if now_ns is None else now_ns
    last = max(w.end_ns for w in windows)
    shift = (now_ns - last) // rate_ns * rate_ns
    for w in windows:
        w.start_ns += shift
        w.end_ns += shift
    return shift


def prepare_windows(windows: list[Profile], opts: UploadOptions) -> list[Profile]:
    """Retime if asked, then refuse (before sending anything) what the server would reject."""
    if opts.retime and windows:
        shift = retime(windows, int(opts.upload_rate_s * 1e9))
        log.info("--retime: windows shifted by %.0f s to end now", shift / 1e9)
        limit = time.time() - MAX_AGE_S
        old = [w for w in windows if w.start_ns / 1e9 < limit]
        if old:
            log.warning("the input spans more than 1 hour: after --retime its %d earliest "
                        "window(s) are still older than the server accepts and are skipped",
                        len(old))
            windows = [w for w in windows if w.start_ns / 1e9 >= limit]
    for w in windows:
        check_age(w.start_ns, w.end_ns, allow_old=opts.allow_old)
        check_labels(merge_labels(opts.tags, w.labels), "labels of window")
    return windows


def run_replay(opts: UploadOptions) -> int:
    windows = prepare_windows(read_windows(opts), opts)
    if not windows:
        log.warning("no stacks in the input; nothing to upload")
        return 0
    session = Session(opts)
    session.deliverer.drain_spool()
    progress = is_terminal()
    for i, w in enumerate(windows, 1):
        session.send_window(w)
        if progress:
            print(f"\rebpf-upload: {i}/{len(windows)} windows", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    if session.deliverer.spooled:
        # exit 0 means the input was delivered: a script must not take a spooled file as sent
        raise DeliveryError(f"{session.deliverer.spooled} upload(s) of this input were not "
                            f"delivered: {session.summary()}")
    log.info("done: %s", session.summary())
    return 0
