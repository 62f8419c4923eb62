"""Shared pieces of the Python-frame tests (issue 14): the interpreters installed here, a
recording of a Python workload symbolized to folded text, and the Python frames of a folded
stack. The symbolizer names a Python frame `file.py qualname` (symbolizer/python.py)."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import tool

PYENV = Path("/root/.pyenv/versions")
DEBIAN = "/usr/bin/python3.11"


def pyenv_python(minor: int) -> str:
    """The pyenv build of 3.<minor> (this machine has 3.6-3.13)."""
    found = sorted(PYENV.glob(f"3.{minor}.*/bin/python3"))
    if not found:
        pytest.fail(f"no pyenv CPython 3.{minor}; the pyenv builds come with this machine")
    return str(found[-1])


def python_id(python: str) -> str:
    return python.split("/")[-3] if "pyenv" in python else "debian"


def record_folded(tmp_path: Path, args: list[str], rate: int = 400, timeout: int = 300
                  ) -> tuple[str, str]:
    """(folded stacks, the recorder's stderr) of `ebpf-record ARGS`."""
    out = tmp_path / "run.parquet"
    r = subprocess.run([tool("ebpf-record"), "--no-progress", "--sample-rate", str(rate),
                        "--out", str(out), *args], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    s = subprocess.run([tool("ebpf-symbolize"), str(out)], capture_output=True, text=True,
                       timeout=120)
    assert s.returncode == 0, s.stderr
    return s.stdout, r.stderr


def stacks(folded: str) -> Iterator[tuple[list[str], int]]:
    """(frames root first, count) per folded line; the first frame is the thread's comm."""
    for line in folded.splitlines():
        if line.strip() and not line.startswith("#"):
            stack, n = line.rsplit(" ", 1)
            yield stack.split(";"), int(n)


def python_frames(frames: list[str], filename: str) -> list[str]:
    """The qualnames of the frames of one script, root first."""
    prefix = filename + " "
    return [f[len(prefix):] for f in frames if f.startswith(prefix)]


def caller_shares(folded: str, filename: str, leaf: str, callers: tuple[str, ...],
                  comm: str | None = None) -> tuple[dict[str, float], int, int]:
    """Shares of `callers` as the direct Python caller of `leaf` (in the samples of threads
    named `comm`, or all), the samples with Python frames of `filename`, and all samples."""
    by: Counter[str] = Counter()
    total = with_python = 0
    for frames, n in stacks(folded):
        if comm is not None and frames[0] != comm:
            continue
        total += n
        py = python_frames(frames, filename)
        if py:
            with_python += n
        if leaf in py and py.index(leaf) > 0:
            by[py[py.index(leaf) - 1]] += n
    seen = sum(by.values()) or 1
    return {c: by[c] / seen for c in callers}, with_python, total
