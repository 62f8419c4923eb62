"""Shared test fixtures.

BPF tests are marked `bpf`; they skip with a reason where BPF is unavailable and fail instead
when CI=true, because CI runs as root on a kernel with BPF and must not silently skip them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def pytest_collection_modifyitems(config, items):
    reason = bpf_unavailable_reason()
    if reason is None or in_ci():
        return  # in CI, _fail_bpf_in_ci fails these tests instead
    for item in items:
        if "bpf" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _fail_bpf_in_ci(request):
    if "bpf" in request.keywords and in_ci():
        reason = bpf_unavailable_reason()
        if reason:
            pytest.fail(f"BPF test cannot run in CI: {reason}")


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


@pytest.fixture
def python() -> str:
    return sys.executable
