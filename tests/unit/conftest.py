"""Unit tests launch no external program (issue 12): no compiler, binutils, Go, Chromium,
debuginfod or perf, and no root; those tests are in tests/integration. A unit test may run our
own code in a child (sys.executable, the venv's console scripts) and the shell and `sleep` that
every Debian system has (deploy/'s agent is a bash script; a sleeping child is a live process
to read /proc of). This guard makes any other launch fail the test that tried it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
BASE = {"sh", "bash", "sleep"}


def _program(args, shell: bool) -> str:
    if isinstance(args, (str, bytes, os.PathLike)):
        first = os.fsdecode(args)
        return shlex.split(first)[0] if shell else first
    return os.fsdecode(args[0])


def _allowed(program: str) -> bool:
    if program in (sys.executable, "python", "python3") or Path(program).name in BASE:
        return True
    return Path(program).parent == VENV_BIN


@pytest.fixture(autouse=True)
def _no_external_programs(monkeypatch):
    real = subprocess.Popen.__init__

    def guarded(self, args, *a, **kw):
        program = _program(args, kw.get("shell", False))
        if not _allowed(program):
            pytest.fail(f"a unit test launched {program!r}: move it to tests/integration")
        real(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
