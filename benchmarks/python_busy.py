#!/usr/bin/env python3
"""The recorder's CPU on a host with N busy Python processes (issue 14): ebpf-record
system-wide with --python and with --no-python, and `perf record -g -a` beside it as the
reference, while N CPython processes run the shares workload (benchmarks/python_cost.py's,
endless) on Debian's python3.11.

The recorder's figure is its own steady-state CPU (its summary: after start-up, % of one core);
perf's is its wait4 user + system time over the same duration. Each run is a fresh start, the
workloads already running, so every process is new to it (snapshots, Python detection, code
objects read once per code object).

    sudo .venv/bin/python benchmarks/python_busy.py                 # 10 processes, ~3 min
    sudo .venv/bin/python benchmarks/python_busy.py --processes 20 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from python_cost import WORKLOAD  # benchmarks/ is sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / ".venv" / "bin" / "ebpf-record"
STEADY = re.compile(r"after start-up, ([\d.]+)% of one core")
SAMPLES = re.compile(r"ebpf-record: ([\d,]+) samples")


def run_recorder(flag: str, seconds: float, out: Path) -> tuple[float, int]:
    r = subprocess.run([str(RECORD), "--no-progress", flag, "--duration", str(seconds),
                        "--out", str(out)], capture_output=True, text=True, timeout=seconds + 300)
    if r.returncode != 0:
        sys.exit(f"python_busy: ebpf-record failed: {r.stderr.strip()[-300:]}")
    steady, samples = STEADY.search(r.stderr), SAMPLES.search(r.stderr)
    if steady is None or samples is None:
        sys.exit(f"python_busy: no summary from ebpf-record: {r.stderr.strip()[-300:]}")
    return float(steady.group(1)), int(samples.group(1).replace(",", ""))


def run_perf(seconds: float, out: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["perf", "record", "-q", "-B", "-N", "-g", "-a", "-F", "100", "-e",
                    "cpu-clock", "-o", str(out), "--", "sleep", str(seconds)],
                   check=True, capture_output=True, timeout=seconds + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return 100 * cpu / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--python", default="/usr/bin/python3.11")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("python_busy: needs root (BPF, perf -a)")
    with tempfile.TemporaryDirectory(prefix="python-busy-") as d:
        tmp = Path(d)
        script = tmp / "shares.py"
        script.write_text(WORKLOAD)
        procs = [subprocess.Popen([args.python, str(script)], stdout=subprocess.DEVNULL)
                 for _ in range(args.processes)]
        try:
            time.sleep(2)
            results = {}
            for flag in ("--python", "--no-python"):
                results[flag] = run_recorder(flag, args.seconds, tmp / f"{flag}.parquet")
            perf = run_perf(args.seconds, tmp / "perf.data")
        finally:
            for p in procs:
                p.send_signal(signal.SIGKILL)
                p.wait()
    load = os.getloadavg()[0]
    print(f"{args.processes} busy {args.python} processes, {args.seconds:.0f} s each run, "
          f"load average {load:.2f} at the end")
    print("| recorder | steady CPU, % of one core | samples |")
    print("|---|---:|---:|")
    for flag, (cpu, samples) in results.items():
        print(f"| ebpf-record {flag} | {cpu:.2f} | {samples:,} |")
    print(f"| perf record -g -a (total CPU) | {perf:.2f} | |")


if __name__ == "__main__":
    main()
