"""The CPython interpreters of this machine that Python frames are tested with (no tests here).

pyenv's builds (`--enable-shared`: the interpreter is in libpython3.X.so) and Debian's
/usr/bin/python3.11 (libpython linked into the executable). A missing one skips its tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
BUILDS = {"3.8": "3.8.18", "3.9": "3.9.18", "3.10": "3.10.13", "3.11": "3.11.7",
          "3.12": "3.12.1", "3.13": "3.13.0"}
DEBIAN_311 = "/usr/bin/python3.11"


def interpreters() -> list:
    """pytest params (id "3.X" or "debian-3.11") of (version, path)."""
    out = []
    for minor, build in BUILDS.items():
        exe = PYENV / build / "bin" / f"python{minor}"
        out.append(pytest.param((tuple(map(int, minor.split("."))), str(exe)), id=minor,
                                marks=pytest.mark.skipif(not exe.exists(),
                                                         reason=f"no {exe}")))
    out.append(pytest.param(((3, 11), DEBIAN_311), id="debian-3.11",
                            marks=pytest.mark.skipif(not os.path.exists(DEBIAN_311),
                                                     reason=f"no {DEBIAN_311}")))
    return out
