"""Python functions in the stacks of CPython processes (issue 14), recorded live and named
offline, on every supported version installed here. Needs root and BPF."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import tool

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

PYENV = Path("/root/.pyenv/versions")
SHARES = Path(__file__).resolve().parents[1] / "helpers" / "shares.py"  # alpha:beta:gamma 1:2:1


def interpreters() -> list[str]:
    found = sorted(str(p) for p in PYENV.glob("3.*/bin/python3")
                   if p.parent.parent.name.split(".")[1].isdigit()
                   and 8 <= int(p.parent.parent.name.split(".")[1]) <= 13)
    return [*found, "/usr/bin/python3.11"]


def design_shares(folded: str) -> tuple[dict[str, float], int, int]:
    """Shares of alpha/beta/gamma as callers of work among the samples with Python frames."""
    by: Counter[str] = Counter()
    total = python = 0
    for line in folded.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        total += int(n)
        py = [f.split(" ", 1)[1] for f in frames if f.startswith("shares.py ")]
        if py:
            python += int(n)
        if "work" in py:
            i = py.index("work")
            if i > 0:
                by[py[i - 1]] += int(n)
    n = sum(by.values()) or 1
    return {k: by[k] / n for k in ("alpha", "beta", "gamma")}, python, total


@pytest.mark.parametrize("python", interpreters(), ids=lambda p: p.split("/")[-3]
                         if "pyenv" in p else "debian")
def test_design_shares_by_python_function_with_native_frames(python, tmp_path):
    if not os.path.exists(python):
        pytest.fail(f"{python} is missing; the pyenv builds come with this machine")
    script = SHARES
    out = tmp_path / "run.parquet"
    # fixed work (not time), so a loaded machine does not thin out the samples; at 400 Hz,
    # so that ~1,000 samples keep the shares' sampling error near 0.015
    r = subprocess.run([tool("ebpf-record"), "--no-progress", "--sample-rate", "400",
                        "--out", str(out), "--", python, str(script), "700"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = subprocess.run([tool("ebpf-symbolize"), str(out)], capture_output=True, text=True,
                       timeout=120)
    assert s.returncode == 0, s.stderr
    shares, with_python, total = design_shares(s.stdout)
    assert total > 400, s.stdout[-2000:]
    assert with_python >= 0.7 * total, (with_python, total)
    for name, want in (("alpha", 0.25), ("beta", 0.50), ("gamma", 0.25)):
        assert shares[name] == pytest.approx(want, abs=0.07), shares
    # native frames stay, under and above the Python ones
    assert "_PyEval_EvalFrameDefault;shares.py <module>" in s.stdout
    assert ";shares.py work;" in s.stdout or ";shares.py work " in s.stdout


def test_no_python_keeps_native_frames_only(tmp_path):
    script = SHARES
    out = tmp_path / "run.parquet"
    r = subprocess.run([tool("ebpf-record"), "--no-progress", "--no-python", "--out", str(out),
                        "--", "/usr/bin/python3.11", str(script), "60"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = subprocess.run([tool("ebpf-symbolize"), str(out)], capture_output=True, text=True,
                       timeout=120)
    assert "shares.py" not in s.stdout and "_PyEval_EvalFrameDefault" in s.stdout
