"""The one vocabulary of the three commands for durations (`10s`, `500ms`, `1m`) and for
--from/--until (Unix seconds, ISO 8601, `now`, `now-1h`, `+10s` from the start)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from recording.errors import UsageError

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds from Go-style durations (`10s`, `1m30s`, `250ms`) or a plain number of seconds."""
    t = text.strip()
    try:
        value = float(t)
    except ValueError:
        parts = _DUR_RE.findall(t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise UsageError(
                f"{what}: cannot read {text!r}; write e.g. 10s, 500ms, 1m or a number of seconds"
            ) from None
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(value):  # float() reads "nan" and "inf": a deadline never reached
        raise UsageError(f"{what}: {text!r} is not a finite number of seconds")
    if value < 0:
        raise UsageError(f"{what}: {text!r} is negative")
    return value


@dataclass(frozen=True)
class TimeBound:
    """A --from/--until as given: a point in time, or an offset from the start of the input
    (`+10s`), which only the command knows."""

    absolute_ns: int | None = None
    offset_ns: int | None = None

    def resolve(self, start_ns: int) -> int:
        if self.absolute_ns is not None:
            return self.absolute_ns
        return start_ns + (self.offset_ns or 0)


TIME_HELP = ("Unix seconds (19 digits: nanoseconds), ISO 8601 (2025-11-25T08:00:00Z; no zone "
             "means UTC), now, now-10s, or +10s after the start")


def parse_time(text: str, what: str, now: float | None = None) -> TimeBound:
    """--from/--until of every command: Unix seconds (nanoseconds when 19 digits, as Pyroscope
    reads from/until), ISO 8601, `now`, `now-DURATION`, or `+DURATION` from the start of the
    input. An ISO time without a zone is UTC: the zone every time these commands print
    (`...Z`), and the same on the recording host and wherever the recording is read."""
    t = text.strip()
    if t.startswith("+"):
        return TimeBound(offset_ns=round(parse_duration(t[1:], what) * 1e9))
    if t == "now" or t.startswith("now-"):
        now = time.time() if now is None else now
        back = parse_duration(t[4:], what) if t != "now" else 0.0
        return TimeBound(absolute_ns=int((now - back) * 1e9))
    try:
        value = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{what}: {text!r} is not a time; {TIME_HELP}")
        return TimeBound(absolute_ns=int(value) if value >= 1e17 else int(value * 1e9))
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what}: cannot read {text!r}; give {TIME_HELP}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return TimeBound(absolute_ns=int(dt.timestamp() * 1e9))


def parse_instant(text: str, what: str, now: float | None = None) -> int:
    """A point in time; `+DURATION` is refused, having no start to count from."""
    bound = parse_time(text, what, now)
    if bound.absolute_ns is None:
        raise UsageError(f"{what}: {text!r} counts from a start this input does not have; "
                         "give a time (Unix seconds, ISO 8601, now-10s)")
    return bound.absolute_ns
