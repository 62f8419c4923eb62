"""Durations (`10s`, `500ms`, `1m`) and points in time (Unix seconds, ISO 8601, `now-1h`)."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

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


def parse_instant(text: str, what: str, now: float | None = None) -> int:
    """Unix nanoseconds from Unix seconds, ISO 8601, `now` or `now-<duration>`."""
    now = time.time() if now is None else now
    t = text.strip()
    if t == "now":
        return int(now * 1e9)
    if t.startswith("now-"):
        return int((now - parse_duration(t[4:], what)) * 1e9)
    try:
        return int(float(t) * 1e9)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{what}: cannot read {text!r}; give Unix seconds, ISO 8601 "
            "(2025-11-25T08:00:00Z), 'now' or 'now-10s'"
        ) from None
    if dt.tzinfo is None:
        raise UsageError(f"{what}: {text!r} has no time zone; add Z or +HH:MM")
    return int(dt.timestamp() * 1e9)
