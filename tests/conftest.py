"""Shared test fixtures.

BPF tests are marked `bpf`, tests that need root (and nothing of BPF) `root`; they skip with a
reason where that is unavailable and fail instead when CI=true, because CI runs as root on a
kernel with BPF and must not silently skip them. Likewise a tool that `make setup` installs
(setup_tool, skip_or_fail) skips without it, and fails in CI.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from tests.helpers.workload_times import WorkloadTimes

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def bpf_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for BPF and perf events"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc's Python binding (Debian python3-bpfcc) is not importable"
    if not os.path.exists("/sys/kernel/btf/vmlinux") and not os.path.exists("/proc/kallsyms"):
        return "kernel without BPF support"
    return None


def root_unavailable_reason() -> str | None:
    return None if os.geteuid() == 0 else "needs root"


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root, not BPF (skips without; fails instead "
                            "when CI=true)")


# marker -> why the tests it marks cannot run here (None: they can)
NEEDS = {"bpf": ("BPF", bpf_unavailable_reason), "root": ("root", root_unavailable_reason)}


def pytest_collection_modifyitems(config, items):
    if in_ci():
        return  # in CI, _fail_unrunnable_in_ci fails these tests instead
    reasons = {marker: why() for marker, (_, why) in NEEDS.items()}
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture(autouse=True)
def _fail_unrunnable_in_ci(request):
    if not in_ci():
        return
    for marker, (label, why) in NEEDS.items():
        if marker in request.keywords and (reason := why()):
            pytest.fail(f"{label} test cannot run in CI: {reason}")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test whose tool or file `make setup` installs; in CI, where set-up has run, its
    absence is a set-up bug, so the test fails instead of hiding it."""
    if in_ci():
        pytest.fail(f"cannot run in CI: {reason}")
    pytest.skip(reason)


def setup_tool(name: str, package: str) -> str:
    """Path of a program that scripts/setup.sh installs (Debian `package`); skip_or_fail."""
    return shutil.which(name) or skip_or_fail(f"{name} ({package}, installed by `make setup`) "
                                               "is not installed")


def tool(name: str) -> str:
    """Path of a console script in the project's venv (falls back to PATH)."""
    p = VENV_BIN / name
    return str(p) if p.exists() else (shutil.which(name) or name)


@pytest.fixture(scope="session")
def fixture_bins(tmp_path_factory) -> Path:
    """Build the C fixtures (PIE, non-PIE, shared library) once per session."""
    out = tmp_path_factory.mktemp("fixtures")
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures"), f"OUT={out}"], check=True)
    return out


class Pace:
    """How fast the fixtures' loops run on this machine. `pace(seconds)` is WORKLOAD_ROUNDS
    for about that much CPU time of the fixture workloads; `pace.loop_iterations(seconds)`
    the iterations of their volatile add loop (fixtures/src: alpha, lib_beta, child_work)."""

    # a workload round is alpha(u), lib_beta(2u), gamma_fn(u) of u * 1000 iterations each,
    # u uniform in [UNIT, 2 * UNIT) with UNIT = 200 (fixtures/src/workload.c)
    ITERATIONS_PER_ROUND = 4 * 1000 * (200 + 199 / 2)

    def __init__(self, per_round: float) -> None:
        self.per_round = per_round

    def __call__(self, seconds: float, at_least: int = 50) -> str:
        return str(max(at_least, round(seconds / self.per_round)))

    def loop_iterations(self, seconds: float) -> int:
        return max(1, round(seconds / self.per_round * self.ITERATIONS_PER_ROUND))


@pytest.fixture(scope="session")
def rounds_for(fixture_bins: Path) -> Pace:
    """rounds_for(seconds): WORKLOAD_ROUNDS for about that much CPU time of the fixture
    workloads on this machine. Fixed work keeps a loaded machine from thinning out samples,
    but machines differ (the same host ran 1,500 rounds in 1.2 s and in 3.5 s on two days,
    and the loop's speed varies with the host CPU the VM runs on): calibrated once by the CPU
    time (not wall time, which load stretches) of 300 rounds."""
    times = []
    for name in ("workload-pie", "workload-nofp"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([str(fixture_bins / name), "0"], check=True,
                       env={**os.environ, "WORKLOAD_ROUNDS": "300"})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    # the faster of the two sets the pace: the other then works at least as long
    return Pace(max(min(times), 1e-3) / 300)


@pytest.fixture
def workload_times(tmp_path: Path) -> WorkloadTimes:
    """Where this test's fixture workload spent its CPU time (run it with .env())."""
    return WorkloadTimes(tmp_path / "workload-times")


@pytest.fixture
def python() -> str:
    return sys.executable
