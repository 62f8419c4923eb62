"""A one-line status of a symbolization run on a terminal (stderr)."""

from __future__ import annotations

import sys
import time

from cli_common.command import is_terminal
from symbolizer.engine import Engine


class Progress:
    """A one-line status on a terminal (stderr); silent when stderr is piped."""

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.enabled = is_terminal()
        self._last = 0.0

    def update(self, engine: Engine, batches: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        sys.stderr.write(f"\r{self.prog}: {batches} batches, {engine.windows_closed} windows, "
                         f"{engine.total_samples} samples, "
                         f"{engine.resolver.cache.parsed} objects parsed\x1b[K")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\r\x1b[K")
