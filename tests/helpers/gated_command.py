"""Running a recorder GatedCommand and reading what it printed (no tests here)."""

from __future__ import annotations

import os

from recorder.targets import GatedCommand, RunAs


def run_gated(argv: tuple[str, ...], run_as: RunAs | None = None) -> str:
    """Run a GatedCommand whose output goes to an inherited pipe; its output."""
    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        cmd = GatedCommand(("bash", "-c", f"({' '.join(argv)}) >&{w}"), run_as)
        cmd.release()
    finally:
        os.close(w)
    code = cmd.wait()
    with os.fdopen(r) as f:
        out = f.read()
    assert code == 0, out
    return out
