"""Profiles summed into aligned windows: the rule both ebpf-symbolize `--window` and
ebpf-upload's upload windows follow.

Pyroscope's agent uploads every 10 s, each upload being one window [from, until) on a 10-second
boundary, and the server sums uploads of the same window. The recorder drains every second on
aligned boundaries, so drain windows nest inside such windows; but their recorded edges jitter
by a few ms (the drain runs a little after the boundary, or its start is late when a drain was
slow), so a drain window is placed by its midpoint: [709.003, 710.0009) belongs to [700, 710)
and [699.998, 701.0) to [700, 710), where placing it by its start would put it in [690, 700).
A profile longer than a window (a whole-run profile, plain folded text spanning minutes)
cannot be split without inventing timing, so it stays a window of its own.

Without a span, every profile goes into one window spanning them all (a whole run).
Profiles are summed per (window, sample rate, label set): a service keeps its own Profile in
each window, so that its samples are uploaded under its own name.
"""

from __future__ import annotations

from profiles.model import Profile

_Key = tuple[int, int, int, tuple[tuple[str, str], ...]]
END_OF_TIME = 2**63


def window_bounds(start_ns: int, end_ns: int, span_ns: int) -> tuple[int, int]:
    """The aligned window of span_ns that holds [start_ns, end_ns), by its midpoint; the
    profile's own bounds when it is longer than a window."""
    if end_ns - start_ns > span_ns:
        return start_ns, end_ns
    mid = (start_ns + end_ns) // 2
    lo = mid - mid % span_ns
    return lo, lo + span_ns


class WindowGrouper:
    """Sums Profiles into windows; hands out the ones that are complete, in time order."""

    def __init__(self, span_ns: int | None) -> None:
        self.span_ns = span_ns
        self._open: dict[_Key, Profile] = {}
        self._run: tuple[int, int] | None = None  # without a span: the bounds seen so far

    def add(self, p: Profile) -> None:
        if self.span_ns is None:
            lo, hi = self._run or (p.start_ns, p.end_ns)
            self._run = (min(lo, p.start_ns), max(hi, p.end_ns))
            lo = hi = 0  # one window; its bounds are set when it is handed out
        else:
            lo, hi = window_bounds(p.start_ns, p.end_ns, self.span_ns)
        key = (lo, hi, p.sample_rate, tuple(sorted(p.labels.items())))
        w = self._open.get(key)
        if w is None:
            w = self._open[key] = Profile(lo, hi, p.sample_rate, dict(p.labels))
        w.merge(p)

    def pop_complete(self, until_ns: int) -> list[Profile]:
        """Windows that end at or before until_ns (the input has moved past them), sorted by
        window, sample rate and labels. Without a span, the window is complete only at the
        end (pop_all)."""
        if self.span_ns is None and until_ns < END_OF_TIME:
            return []
        done = sorted(k for k in self._open if k[1] <= until_ns)
        out = [self._open.pop(k) for k in done]
        if self.span_ns is None and self._run is not None:
            for w in out:
                w.start_ns, w.end_ns = self._run
            self._run = None
        return out

    def pop_all(self) -> list[Profile]:
        return self.pop_complete(END_OF_TIME)

    @property
    def pending(self) -> int:
        return len(self._open)
