"""Stopping a symbolizer that reads a stream without losing the recorder's last window."""

from __future__ import annotations

import signal
import sys


class StopOnSignal:
    """Ctrl-C or SIGTERM reaches every command of `ebpf-record --out - | ebpf-symbolize - |
    ebpf-upload -` at once. Dying at once would lose the recorder's last window, which it is
    about to write: keep reading until it closes the pipe, for up to GRACE_SECONDS; a second
    signal stops at once."""

    GRACE_SECONDS = 5

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.forced = False
        self.signalled = False
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        self._old_alarm = signal.signal(signal.SIGALRM, self._force)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signalled:
            self._force(signum, _frame)
        self.signalled = True
        print(f"{self.prog}: {signal.Signals(signum).name}: finishing the last window from the "
              f"recorder (up to {self.GRACE_SECONDS} s; again to stop now)", file=sys.stderr)
        signal.alarm(self.GRACE_SECONDS)

    def _force(self, _signum: int, _frame: object) -> None:
        self.forced = True
        raise KeyboardInterrupt

    def restore(self) -> None:
        signal.alarm(0)
        for s, h in self._old.items():
            signal.signal(s, h)
        signal.signal(signal.SIGALRM, self._old_alarm)
