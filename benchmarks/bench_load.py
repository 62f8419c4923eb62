"""Background activity shared by the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess


def start_churn(per_second: float) -> subprocess.Popen | None:
    """Process churn of a busy host: short-lived Python processes (each maps ~30 executable
    objects and imports extension modules, so the recorder snapshots it and re-reads it
    after its executable mmaps)."""
    if per_second <= 0:
        return None
    script = (f"while :; do /usr/bin/python3 -c 'import json, ssl, sqlite3' & "
              f"sleep {1.0 / per_second:.3f}; done")
    return subprocess.Popen(["bash", "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_churn(p: subprocess.Popen | None) -> None:
    if p is not None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
