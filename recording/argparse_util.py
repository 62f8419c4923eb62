"""argparse that reports bad flags as one line (via UsageError) instead of usage + exit 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from recording import timeparse
from recording.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{self.prog} --help`")


def parse_duration(text: str) -> float:
    """argparse type: a positive duration (`30`, `30s`, `5m`, `1h`, `250ms`, `1m30s`)."""
    try:
        value = timeparse.parse_duration(text)
    except UsageError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}; use seconds or a unit: 30s, 5m, 1h"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive, got {text!r}")
    return value
