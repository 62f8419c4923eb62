"""Debian's own programs on a fixed amount of work, for the unwinding tests and
benchmarks/unwind_vs_perf.py: sort (threads: start_thread), xz -3 (liblzma), gzip -6 and
python3.11 (pure Python). The input is seeded random text, so every run does the same work.
"""

from __future__ import annotations

import random
from pathlib import Path

PYTHON311 = "/usr/bin/python3.11"  # Debian's (a pyenv shim may come first on PATH)
PROGRAMS = ("sort", "xz", "gzip", "python3.11")
# JSON round trips (the C accelerator called from Python) and a recursive function
# (Python-to-Python calls); ~3 ms of CPU per round.
PY_WORK = """
import json, sys
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
doc = {"k%d" % i: [i, str(i), {"x": i * 0.5, "y": [None, True, "z" * (i % 7)]}]
       for i in range(2000)}
for _ in range(int(sys.argv[1])):
    json.loads(json.dumps(doc))
    fib(18)
"""


def write_text(path: Path, mib: int = 16) -> Path:
    """MIB MiB of seeded random lowercase text, 15-letter lines on average."""
    data = random.Random(10).randbytes(mib << 20)
    table = bytes((0x0A if i % 16 == 0 else 0x61 + i % 26) for i in range(256))
    path.write_bytes(data.translate(table))
    return path


def commands(text: Path, tmp: Path, scale: float = 1.0) -> dict[str, list[str]]:
    """Each program's command line: ~3 s of CPU each at scale 1 on this machine's cores."""
    small = tmp / "xz-input.txt"
    # xz -3 on random letters runs at ~2 MB/s
    small.write_bytes(text.read_bytes()[: max(1 << 20, int(scale * (6 << 20)))])
    copies = max(1, round(4 * scale))
    return {
        # copies of the text: sort's threads (start_thread) sort and merge in parallel
        "sort": ["sort", "-S", "64M", "-T", str(tmp), "-o", "/dev/null", *[str(text)] * copies],
        "xz": ["xz", "-3", "-T1", "-c", str(small)],
        "gzip": ["gzip", "-6", "-c", *[str(text)] * max(1, round(5 * scale))],
        "python3.11": [PYTHON311, "-c", PY_WORK, str(max(10, round(1200 * scale)))],
    }
