#!/usr/bin/env python3
"""Symbolization cost: `perf script` against `ebpf-symbolize` on recordings of the same
activity, side by side in one run.

Two sizes:
- small (`--mode small`): the fixture workload alone for --duration seconds, twice: under
  `perf record -g -F 100` and under `ebpf-record` (100 Hz). Start-up dominates.
- system (`--mode system`, the default): the whole machine for --duration seconds, with the
  fixture workload on one core plus other activity (a loop compiling the fixtures with gcc,
  and a shell loop starting short-lived processes), recorded by `perf record -g -a -F 100` and
  `ebpf-record` at the same time, so both see the same processes and objects.

Then each symbolizer runs --repeat times on its own recording: `perf script` (its output to
/dev/null), `ebpf-symbolize` with an empty cache (cold: ELF parsed, symbol tables written to
the cache) and with that cache (warm). Wall time is the median; peak memory is the child's max
RSS (getrusage RUSAGE_CHILDREN in a fresh wrapper process per run, so runs do not mask each
other). Nothing is asserted: these are figures to read.

    sudo .venv/bin/python benchmarks/symbolize_vs_perf_script.py --mode system --duration 30
    sudo .venv/bin/python benchmarks/symbolize_vs_perf_script.py --mode small --duration 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"

_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "dt = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(dt, u.ru_maxrss, r.returncode, u.ru_utime + u.ru_stime)\n"
)

# Other activity for --mode system: many short-lived processes with objects of their own.
_COMPILE_LOOP = 'while :; do make -s -B -C "$1" OUT="$2" >/dev/null 2>&1; done'
_SHELL_LOOP = "while :; do sh -c 'i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done'; done"


def measure(cmd: list[str]) -> tuple[float, int, float]:
    """(wall seconds, peak RSS KiB, CPU seconds user + system) of one run of cmd. CPU time is
    the figure to compare on a machine shared with other work, where wall time waits."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True,
                         text=True, check=True).stdout.split()
    if out[2] != "0":
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return float(out[0]), int(out[1]), float(out[3])


def record_small(work: Path, duration: float, perf_data: Path, rec: Path) -> None:
    exe = [str(work / "workload-pie"), str(duration)]
    subprocess.run(["perf", "record", "-q", "-g", "-F", "100", "-o", str(perf_data), "--",
                    *exe], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([str(VENV / "ebpf-record"), "--out", str(rec), "--", *exe], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def record_system(work: Path, duration: float, perf_data: Path, rec: Path) -> None:
    build = work / "build"
    build.mkdir()
    activity = [
        subprocess.Popen([str(work / "workload-pie"), str(duration + 10)],
                         stdout=subprocess.DEVNULL, start_new_session=True),
        subprocess.Popen(["bash", "-c", _COMPILE_LOOP, "loop", str(ROOT / "fixtures"),
                          str(build)], start_new_session=True),
        subprocess.Popen(["bash", "-c", _SHELL_LOOP], start_new_session=True),
    ]
    try:
        time.sleep(1)
        perf = subprocess.Popen(["perf", "record", "-q", "-g", "-a", "-F", "100", "-o",
                                 str(perf_data), "--", "sleep", str(duration)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ours = subprocess.Popen([str(VENV / "ebpf-record"), "--out", str(rec), "--duration",
                                 str(duration)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if perf.wait() != 0 or ours.wait() != 0:
            raise SystemExit("recording failed (run as root with perf and BPF available)")
    finally:
        for p in activity:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def sizes(perf_data: Path, rec: Path) -> tuple[int, int, int]:
    """(perf samples, ebpf-record samples, processes in ebpf-record's recording)."""
    lines = subprocess.run(["perf", "script", "-F", "pid", "-G", "-i", str(perf_data)],
                           capture_output=True, text=True).stdout
    perf_samples = sum(1 for ln in lines.splitlines() if ln.strip())
    code = ("import sys, pyarrow.parquet as pq, pyarrow.compute as pc\n"
            "t = pq.read_table(sys.argv[1], columns=['record', 'count', 'pid'])\n"
            "s = t.filter(pc.equal(t['record'], 'sample'))\n"
            "p = t.filter(pc.equal(t['record'], 'process'))\n"
            "print(pc.sum(s['count']).as_py() or 0, len(pc.unique(p['pid'])))\n")
    out = subprocess.run([str(VENV / "python"), "-c", code, str(rec)], capture_output=True,
                         text=True, check=True).stdout.split()
    return perf_samples, int(out[0]), int(out[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("system", "small"), default="system")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (recordings, caches) for profiling")
    a = ap.parse_args()
    for t in ("perf", "make", "gcc"):
        if not shutil.which(t):
            raise SystemExit(f"{t} not found; run `make setup`")
    work = Path(tempfile.mkdtemp(prefix="symbench-"))
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures"), f"OUT={work}"], check=True)
    perf_data, rec = work / "perf.data", work / "run.parquet"
    (record_system if a.mode == "system" else record_small)(work, a.duration, perf_data, rec)

    sym = [str(VENV / "ebpf-symbolize"), str(rec)]
    results: dict[str, list[tuple[float, int, float]]] = {
        "perf script": [], "ebpf-symbolize cold": [], "ebpf-symbolize warm": []}
    for i in range(a.repeat):
        results["perf script"].append(measure(["perf", "script", "-i", str(perf_data)]))
        cache = work / f"cache{i}"
        results["ebpf-symbolize cold"].append(measure([*sym, "--cache-dir", str(cache)]))
        results["ebpf-symbolize warm"].append(measure([*sym, "--cache-dir", str(cache)]))

    perf_n, ours_n, procs = sizes(perf_data, rec)
    med = {k: (statistics.median(t for t, _, _ in v), max(m for _, m, _ in v),
               statistics.median(c for _, _, c in v)) for k, v in results.items()}
    base, cbase = med["perf script"][0], med["perf script"][2]
    print(f"mode {a.mode}, {a.duration:g} s at 100 Hz, median of {a.repeat} runs; "
          f"perf.data {perf_data.stat().st_size / 2**20:.1f} MiB, {perf_n} samples; "
          f"recording {rec.stat().st_size / 2**20:.1f} MiB, {ours_n} samples, "
          f"{procs} processes")
    print(f"{'tool':<22}{'wall (s)':>10}{'vs perf script':>16}{'CPU (s)':>9}{'vs perf':>9}"
          f"{'peak RSS (MiB)':>16}")
    for k, (t, rss, cpu) in med.items():
        print(f"{k:<22}{t:>10.3f}{t / base:>15.2f}x{cpu:>9.3f}{cpu / cbase:>8.2f}x"
              f"{rss / 1024:>16.1f}")
    if a.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
