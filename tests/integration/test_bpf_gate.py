"""The gate for tests that need BPF: skip with a reason where BPF is missing, fail in CI.

Runs one BPF test in a child pytest where bcc cannot be imported (a shadow `bcc` module that
raises ImportError comes first on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BPF_TEST = "tests/integration/test_record.py::test_sigterm_ends_with_a_complete_file"


def run_without_bcc(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    (shadow / "bcc.py").write_text("raise ImportError('no bcc here (test shadow)')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = f"{shadow}{os.pathsep}{env.get('PYTHONPATH', '')}"
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p",
                           "no:cacheprovider", BPF_TEST], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.root  # the gate checks root first
def test_bpf_tests_skip_with_a_reason_outside_ci(tmp_path):
    r = run_without_bcc(tmp_path, ci=False)
    assert r.returncode == 0, r.stdout
    assert "1 skipped" in r.stdout and "python3-bpfcc" in r.stdout


@pytest.mark.root  # the gate checks root first
def test_bpf_tests_fail_in_ci(tmp_path):
    r = run_without_bcc(tmp_path, ci=True)
    assert r.returncode == 1, r.stdout
    # the gate fails the test in its set-up, which pytest reports as an error: exit 1 either way
    assert ("1 failed" in r.stdout or "1 error" in r.stdout) and "skipped" not in r.stdout
    assert "BPF test cannot run in CI" in r.stdout
