#!/usr/bin/env python3
"""Symbolization cost: `perf script` against `ebpf-symbolize` on recordings of the same
workload, side by side in one run.

The fixture workload runs for --duration seconds twice: under `perf record -g -F 100` and under
`ebpf-record` (100 Hz). Then each symbolizer runs --repeat times on its own recording:
`perf script` (its output to /dev/null), `ebpf-symbolize` with an empty cache (cold: ELF
parsed, symbol tables written to the cache) and with that cache (warm). Wall time is the
median; peak memory is the child's max RSS (getrusage RUSAGE_CHILDREN in a fresh wrapper
process per run, so runs do not mask each other).

    sudo .venv/bin/python benchmarks/symbolize_vs_perf_script.py --duration 10
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"

_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "dt = time.perf_counter() - t\n"
    "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)\n"
)


def measure(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS KiB) of one run of cmd."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True,
                         text=True, check=True).stdout.split()
    if out[2] != "0":
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return float(out[0]), int(out[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    for t in ("perf", "make", "gcc"):
        if not shutil.which(t):
            raise SystemExit(f"{t} not found; run `make setup`")
    work = Path(tempfile.mkdtemp(prefix="symbench-"))
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures"), f"OUT={work}"], check=True)
    exe = [str(work / "workload-pie"), str(a.duration)]
    perf_data, rec = work / "perf.data", work / "run.parquet"
    subprocess.run(["perf", "record", "-q", "-g", "-F", "100", "-o", str(perf_data), "--",
                    *exe], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([str(VENV / "ebpf-record"), "--out", str(rec), "--", *exe], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    sym = [str(VENV / "ebpf-symbolize"), str(rec)]
    results: dict[str, list[tuple[float, int]]] = {"perf script": [], "ebpf-symbolize cold": [],
                                                   "ebpf-symbolize warm": []}
    for i in range(a.repeat):
        results["perf script"].append(measure(["perf", "script", "-i", str(perf_data)]))
        cache = work / f"cache{i}"
        results["ebpf-symbolize cold"].append(measure([*sym, "--cache-dir", str(cache)]))
        results["ebpf-symbolize warm"].append(measure([*sym, "--cache-dir", str(cache)]))

    med = {k: (statistics.median(t for t, _ in v), max(m for _, m in v))
           for k, v in results.items()}
    base = med["perf script"][0]
    print(f"workload {a.duration:g} s at 100 Hz, median of {a.repeat} runs")
    print(f"{'tool':<22}{'wall (s)':>10}{'vs perf script':>16}{'peak RSS (MiB)':>16}")
    for k, (t, rss) in med.items():
        print(f"{k:<22}{t:>10.3f}{t / base:>15.2f}x{rss / 1024:>16.1f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
