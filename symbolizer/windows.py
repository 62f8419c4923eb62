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
    for (stack, pid, comm), n in p.processes.items():
        target.processes[(stack, pid, comm)] = target.processes.get((stack, pid, comm), 0) + n


def _label_key(p: Profile) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(p.labels.items()))


class WindowGrouper:
    """Drain windows in (each a list of Profiles, one per label set), output windows out.

    Profiles are merged per (output window, label set): a service keeps its own Profile in
    every output window, so that its samples are uploaded under its own name.
    """

    def __init__(self, plan: WindowPlan) -> None:
        self.plan = plan
        self._current: dict[tuple[tuple[str, str], ...], Profile] = {}
        self._bounds: tuple[int, int] | None = None
        self._bucket: int | None = None

    def _selected(self, start_ns: int, end_ns: int) -> bool:
        if self.plan.from_ns is not None and end_ns <= self.plan.from_ns:
            return False
        return not (self.plan.until_ns is not None and start_ns >= self.plan.until_ns)

    def add(self, drain: list[Profile]) -> list[list[Profile]]:
        if not drain or not self._selected(drain[0].start_ns, drain[0].end_ns):
            return []
        if self.plan.per_drain and self.plan.span_ns is None:
            return [drain]
        start, end = drain[0].start_ns, drain[0].end_ns
        out: list[list[Profile]] = []
        span = self.plan.span_ns
        if span is None:
            lo, hi = self._bounds or (start, end)
            self._bounds = (min(lo, start), max(hi, end))
            self._merge(drain)
            return out
        bucket = start // span
        if self._bounds is not None and bucket != self._bucket:
            out.append(self._take())
        if self._bounds is None:
            self._bucket = bucket
            self._bounds = (bucket * span, (bucket + 1) * span)
        self._merge(drain)
        if end >= self._bounds[1]:
            out.append(self._take())
        return out

    def _merge(self, drain: list[Profile]) -> None:
        for p in drain:
            k = _label_key(p)
            cur = self._current.get(k)
            if cur is None:
                cur = self._current[k] = Profile(0, 0, p.sample_rate, dict(p.labels))
            merge_into(cur, p)

    def _take(self) -> list[Profile]:
        assert self._bounds is not None
        lo, hi = self._bounds
        window = [self._current[k] for k in sorted(self._current)]
        for p in window:
            p.start_ns, p.end_ns = lo, hi
        # an unlabelled empty Profile is only a placeholder for an empty drain window
        if len(window) > 1:
            window = [p for p in window if p.stacks or p.labels]
        self._current, self._bounds = {}, None
        return window

    def finish(self) -> list[list[Profile]]:
        return [self._take()] if self._bounds is not None else []
