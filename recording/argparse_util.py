"""argparse that reports bad flags as one line (via UsageError) instead of usage + exit 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from recording.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{self.prog} --help`")


def parse_duration(text: str) -> float:
    """Seconds from `30`, `30s`, `5m`, `1h`, `250ms`."""
    t = text.strip().lower()
    number, scale = t, 1.0
    # "ms" comes before "s" so that 250ms is not read as 250m + s.
    for suffix, unit_scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix):
            number, scale = t[: -len(suffix)], unit_scale
            break
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}; use seconds or a unit: 30s, 5m, 1h"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive, got {text!r}")
    return value
