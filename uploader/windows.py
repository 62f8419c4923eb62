"""Group Profiles into upload windows aligned like the agent's, and retime old ones.

The recorder drains every second on aligned boundaries and `ebpf-symbolize` keeps those drain
windows; Pyroscope's agent uploads every 10 s on 10-second boundaries, each upload being one
window [from, until). So drain windows are summed into the aligned --upload-rate window they
fall in (by their midpoint). A profile longer than an upload window (plain text, or a whole-run
profile) cannot be split without inventing timing, so it is uploaded as its own window.
"""

from __future__ import annotations

import time

from symbolizer.model import Profile

_Key = tuple[int, int, int, tuple[tuple[str, str], ...]]


def _key(p: Profile) -> _Key:
    return (p.start_ns, p.end_ns, p.sample_rate, tuple(sorted(p.labels.items())))


class Batcher:
    """Sums Profiles into aligned windows; hands out the ones that are complete."""

    def __init__(self, upload_rate_ns: int) -> None:
        self.rate_ns = upload_rate_ns
        self._open: dict[_Key, Profile] = {}

    def bounds(self, from_ns: int, until_ns: int) -> tuple[int, int]:
        # Drain windows are aligned in intent but their recorded edges jitter by a few ms
        # (the drain runs a little after the boundary), so a drain window is placed by its
        # midpoint, not by whether it fits exactly.
        if until_ns - from_ns <= self.rate_ns:
            mid = (from_ns + until_ns) // 2
            start = mid - mid % self.rate_ns
            return start, start + self.rate_ns
        return from_ns, until_ns

    def add(self, p: Profile) -> None:
        lo, hi = self.bounds(p.start_ns, p.end_ns)
        w = Profile(lo, hi, p.sample_rate, dict(p.labels))
        w = self._open.setdefault(_key(w), w)
        for stack, count in p.stacks.items():
            w.add(stack, count)

    def pop_complete(self, until_ns: int) -> list[Profile]:
        """Windows that end at or before until_ns (the stream has moved past them)."""
        done = [k for k, w in self._open.items() if w.end_ns <= until_ns]
        return sorted((self._open.pop(k) for k in done), key=_key)

    def pop_all(self) -> list[Profile]:
        return self.pop_complete(2**63)

    @property
    def pending(self) -> int:
        return len(self._open)


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
