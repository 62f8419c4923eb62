"""The systemd unit, as systemd itself reads it (systemd-analyze verify; skips without it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
AGENT = DEPLOY / "ebpf-profiler-agent"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_accepts_the_unit(tmp_path):
    text = (DEPLOY / "systemd" / "ebpf-profiler.service").read_text()
    unit = tmp_path / "ebpf-profiler.service"
    unit.write_text(text.replace("/usr/local/bin/ebpf-profiler-agent", str(AGENT)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # it only warns about bad settings, so a warning fails the test too
    assert str(unit) not in r.stderr, r.stderr
