"""Output windows from drain windows: the whole run, one per drain window (streams), or
fixed spans (`--window 10s`), limited by `--from/--until`.

The grouping is profiles/windows.py's, the rule ebpf-upload follows too: a drain window goes
into the aligned span its midpoint falls in, like the 10-second windows Pyroscope uploads use;
a span is complete as soon as a drain window ending at or after its end arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from profiles.model import Profile
from profiles.windows import WindowGrouper


@dataclass(frozen=True)
class WindowPlan:
    """Which time windows the output is cut into (--window, --from, --until)."""

    span_ns: int | None = None  # --window; None: whole run, or each drain window when streaming
    from_ns: int | None = None
    until_ns: int | None = None
    per_drain: bool = False  # streams without --window: pass each drain window through


def _by_window(profiles: list[Profile]) -> list[list[Profile]]:
    out = []
    for _, group in groupby(profiles, key=lambda p: (p.start_ns, p.end_ns)):
        window = list(group)
        # an unlabelled empty Profile is only a placeholder for an empty drain window
        if len(window) > 1:
            window = [p for p in window if p.stacks or p.labels]
        out.append(window)
    return out


class OutputWindows:
    """Drain windows in (each a list of Profiles, one per label set), output windows out
    (each a list of Profiles of one window, sorted by labels)."""

    def __init__(self, plan: WindowPlan) -> None:
        self.plan = plan
        self._grouper = WindowGrouper(plan.span_ns)

    def _selected(self, start_ns: int, end_ns: int) -> bool:
        if self.plan.from_ns is not None and end_ns <= self.plan.from_ns:
            return False
        return not (self.plan.until_ns is not None and start_ns >= self.plan.until_ns)

    def add(self, drain: list[Profile]) -> list[list[Profile]]:
        if not drain or not self._selected(drain[0].start_ns, drain[0].end_ns):
            return []
        if self.plan.per_drain and self.plan.span_ns is None:
            return [drain]
        for p in drain:
            self._grouper.add(p)
        return _by_window(self._grouper.pop_complete(drain[0].end_ns))

    def finish(self) -> list[list[Profile]]:
        return _by_window(self._grouper.pop_all())
