"""Shared pieces of the Python-frame tests (issue 14): the interpreters installed here, a
recording of a Python workload symbolized to folded text, and the Python frames of a folded
stack. The symbolizer names a Python frame `file.py qualname` (symbolizer/python.py)."""

from __future__ import annotations

import functools
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import tool

PYENV = Path("/root/.pyenv/versions")
DEBIAN = "/usr/bin/python3.11"


# work() costs the same per iteration at any n (see test_record_python.py); rounds of varying
# length, so that the sampler's fixed period cannot lock onto a loop's phase
COMMON = '''
import ctypes, sys
def set_comm(name):
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: the thread's comm
def work(n):
    s = 0
    for i in range(n):
        s = (s + i) & 0xFFFF
    return s
def lengths(rounds):
    seed = 12345
    for _ in range(rounds):
        seed = (seed * 1103515245 + 12345) % 2**31
        yield 10000 + seed % 20000
'''

# the CPU time of one round, measured in the interpreter itself: the fastest of three runs of
# CALIBRATION_ROUNDS (a loaded machine only makes rounds slower, so more rounds than needed)
CALIBRATION_ROUNDS = 60
_CALIBRATE = COMMON + f"""
import time
best = None
for _ in range(3):
    t = time.process_time()
    for n in lengths({CALIBRATION_ROUNDS}): work(n)
    took = time.process_time() - t
    best = took if best is None else min(best, took)
print(best / {CALIBRATION_ROUNDS})
"""


@functools.cache
def _seconds_per_round(python: str) -> float:
    out = subprocess.run([python, "-c", _CALIBRATE], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return max(float(out), 1e-6)


def python_rounds(python: str, cpu_seconds: float) -> str:
    """Rounds of COMMON's work() for about `cpu_seconds` of CPU in `python` on this machine
    (fixed work keeps a loaded machine from thinning out the samples, but interpreters and
    days differ: 500 rounds were 0.33 s of Debian's 3.11 in one fresh-clone run, too few for
    its test's 200 samples at 400 Hz)."""
    return str(max(50, round(cpu_seconds / _seconds_per_round(python))))


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
