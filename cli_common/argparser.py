"""argparse that reports bad flags as one line (via UsageError) instead of usage + exit 2."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from cli_common import timeparse
from recording.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No prefixes of flags: ebpf-upload hides secret flags from `ps` by their whole name,
        # and `--auth-tok` would otherwise be --auth-token left in the process title.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: Any = None) -> Any:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            # a mistyped `--secret-flag=VALUE` is reported by its name only
            shown = (a.partition("=")[0] if a.startswith("--") else a for a in extras)
            self.error("unrecognized arguments: " + " ".join(shown))
        return ns

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
