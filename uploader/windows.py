"""Group read blocks into upload windows aligned like the agent's, and retime old ones.

The recorder drains every second on aligned boundaries and `ebpf-symbolize` keeps those drain
windows; Pyroscope's agent uploads every 10 s on 10-second boundaries, each upload being one
window [from, until). So drain windows are summed into the aligned --upload-rate window they
fall in (by their midpoint). A block longer than an upload window (plain text, or a whole-run
profile) cannot be split without inventing timing, so it is uploaded as its own window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from symbolizer.model import Profile
from uploader.folded import Block


@dataclass
class Window:
    """One upload: stacks of one label set over [from_ns, until_ns)."""

    from_ns: int
    until_ns: int
    sample_rate: int
    labels: dict[str, str] = field(default_factory=dict)
    stacks: dict[str, int] = field(default_factory=dict)
    profile: Profile | None = None  # the frames behind `stacks`, when read from a recording

    @property
    def total(self) -> int:
        return sum(self.stacks.values())


def _key(w: Window) -> tuple[int, int, int, tuple[tuple[str, str], ...]]:
    return (w.from_ns, w.until_ns, w.sample_rate, tuple(sorted(w.labels.items())))


class Batcher:
    """Sums blocks into aligned windows; hands out the ones that are complete."""

    def __init__(self, upload_rate_ns: int, default_rate: int) -> None:
        self.rate_ns = upload_rate_ns
        self.default_rate = default_rate
        self._open: dict[tuple[int, int, int, tuple[tuple[str, str], ...]], Window] = {}

    def bounds(self, from_ns: int, until_ns: int) -> tuple[int, int]:
        # Drain windows are aligned in intent but their recorded edges jitter by a few ms
        # (the drain runs a little after the boundary), so a drain window is placed by its
        # midpoint, not by whether it fits exactly.
        if until_ns - from_ns <= self.rate_ns:
            mid = (from_ns + until_ns) // 2
            start = mid - mid % self.rate_ns
            return start, start + self.rate_ns
        return from_ns, until_ns

    def add(self, block: Block) -> None:
        assert block.from_ns is not None and block.until_ns is not None
        lo, hi = self.bounds(block.from_ns, block.until_ns)
        w = Window(lo, hi, block.sample_rate or self.default_rate, dict(block.labels))
        w = self._open.setdefault(_key(w), w)
        for stack, count in block.stacks.items():
            w.stacks[stack] = w.stacks.get(stack, 0) + count
        if block.profile is not None:
            if w.profile is None:
                w.profile = Profile(lo, hi, w.sample_rate, dict(w.labels))
            for frames, count in block.profile.stacks.items():
                w.profile.add(frames, count)

    def pop_complete(self, until_ns: int) -> list[Window]:
        """Windows that end at or before until_ns (the stream has moved past them)."""
        done = [k for k, w in self._open.items() if w.until_ns <= until_ns]
        return sorted((self._open.pop(k) for k in done), key=_key)

    def pop_all(self) -> list[Window]:
        return self.pop_complete(2**63)

    @property
    def pending(self) -> int:
        return len(self._open)


def retime(windows: list[Window], rate_ns: int, now_ns: int | None = None) -> int:
    """Shift all windows so the last ends at the latest upload boundary <= now, keeping their
    spacing and their alignment (the shift is a whole number of upload windows).
    Returns the shift in ns."""
    if not windows:
        return 0
    now_ns = time.time_ns() if now_ns is None else now_ns
    last = max(w.until_ns for w in windows)
    shift = (now_ns - last) // rate_ns * rate_ns
    for w in windows:
        w.from_ns += shift
        w.until_ns += shift
        if w.profile is not None:
            w.profile.start_ns += shift
            w.profile.end_ns += shift
    return shift
