"""Output windows from drain windows: the whole run, one per drain window (streams), or
fixed spans (`--window 10s`), limited by `--from/--until`.

Drain windows are aligned to multiples of the drain interval, so they nest inside aligned
spans of any multiple of it, like the 10-second windows Pyroscope uploads use; a span is
complete as soon as a drain window ending at its end arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

from symbolizer.model import Profile


@dataclass(frozen=True)
class WindowPlan:
    span_ns: int | None = None  # --window; None: whole run, or each drain window when streaming
    from_ns: int | None = None
    until_ns: int | None = None
    per_drain: bool = False  # streams without --window: pass each drain window through


def merge_into(target: Profile, p: Profile) -> None:
    for stack, n in p.stacks.items():
        target.add(stack, n)


class WindowGrouper:
    def __init__(self, plan: WindowPlan) -> None:
        self.plan = plan
        self._current: Profile | None = None
        self._bucket: int | None = None

    def _selected(self, p: Profile) -> bool:
        if self.plan.from_ns is not None and p.end_ns <= self.plan.from_ns:
            return False
        return not (self.plan.until_ns is not None and p.start_ns >= self.plan.until_ns)

    def add(self, p: Profile) -> list[Profile]:
        if not self._selected(p):
            return []
        if self.plan.per_drain and self.plan.span_ns is None:
            return [p]
        out: list[Profile] = []
        span = self.plan.span_ns
        if span is None:
            if self._current is None:
                self._current = Profile(p.start_ns, p.end_ns, p.sample_rate, dict(p.labels))
            cur = self._current
            cur.start_ns = min(cur.start_ns, p.start_ns)
            cur.end_ns = max(cur.end_ns, p.end_ns)
            merge_into(cur, p)
            return out
        bucket = p.start_ns // span
        if self._current is not None and bucket != self._bucket:
            out.append(self._current)
            self._current = None
        if self._current is None:
            self._bucket = bucket
            self._current = Profile(bucket * span, (bucket + 1) * span, p.sample_rate,
                                    dict(p.labels))
        merge_into(self._current, p)
        if p.end_ns >= self._current.end_ns:
            out.append(self._current)
            self._current = None
        return out

    def finish(self) -> list[Profile]:
        out = [self._current] if self._current is not None else []
        self._current = None
        return out
