"""Turning what was read into Profiles with a window: plain-text time ranges, sample rates."""

from __future__ import annotations

import logging
import time

from profiles.folded import Block
from profiles.model import Profile
from uploader.options import UploadOptions

log = logging.getLogger("ebpf-upload")
DEFAULT_SAMPLE_RATE = 100


class BlockFiller:
    """Gives plain folded text (no header) its window and every profile a sample rate.

    Plain text covers [--until - --upload-rate, --until) by default, --until defaulting to the
    moment it was read: like the agent, which uploads what it collected over the last period.
    The symbolizer's header (or the recording) states the rate the recording was made at, so
    it wins over --sample-rate (which is for plain text); a difference is reported once.
    """

    def __init__(self, opts: UploadOptions) -> None:
        self.opts = opts
        self._warned_rate = False
        self._warned_frames = False

    def fill(self, b: Block | Profile) -> Profile:
        """A Profile from a recording is complete; a Block of text may lack window and rate."""
        o = self.opts
        block = b if isinstance(b, Block) else Block(b)
        p = block.profile
        if block.note and not self._warned_frames:
            log.warning("%s", block.note)
            self._warned_frames = True
        if not block.timed:
            until = o.until_ns if o.until_ns is not None else time.time_ns()
            start = o.from_ns if o.from_ns is not None else until - int(o.upload_rate_s * 1e9)
            p.start_ns, p.end_ns = start, until
        if not block.rated:
            p.sample_rate = o.sample_rate or DEFAULT_SAMPLE_RATE
        elif o.sample_rate and o.sample_rate != p.sample_rate and not self._warned_rate:
            log.warning("--sample-rate %d ignored: the input says it was sampled at %d Hz",
                        o.sample_rate, p.sample_rate)
            self._warned_rate = True
        return p
