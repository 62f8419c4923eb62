"""pytest-benchmark micro-benchmarks of the hot paths (docs/performance.md, "Micro-benchmarks").

Run by `make bench`, never by `make test` (pytest's testpaths is tests/, and pyproject's addopts
disable benchmarks unless --benchmark-enable is given). A benchmark's unit of work is in its
name (`_1000_addresses`, `_10000_stacks`): per-unit figures are its mean divided by that; the
sizes needed for per-MB figures are in its extra_info (in the JSON saved under .benchmarks/).
"""

from __future__ import annotations

import os

import pytest

LIBC_PATHS = ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
              "/lib64/libc.so.6", "/usr/lib64/libc.so.6")


@pytest.fixture(scope="session")
def libc() -> str:
    for path in LIBC_PATHS:
        if os.path.isfile(path):
            return os.path.realpath(path)
    pytest.skip("no libc.so.6 found")
