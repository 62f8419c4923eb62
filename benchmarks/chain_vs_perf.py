#!/usr/bin/env python3
"""Continuous mode's cost: `ebpf-record --out - | ebpf-symbolize - | ebpf-upload -` at 100 Hz
system-wide for --duration seconds, against `perf record -F 100 -a -g` for as long.

Both run while the fixture workload keeps one core busy (so there are stacks to handle) and
the chain uploads to the test receiver (tests/receiver) on 127.0.0.1. Every --interval seconds
it reads the CPU time of every process of each tool's process group (utime + stime from
/proc/PID/stat; the last reading is kept for processes that end) and RSS (/proc/PID/statm),
per command. CPU is reported as % of one core over the run; memory as RSS at the first
reading after warm-up and at the end, so growth over time shows.

Kernel-side cost (the BPF program, perf's own interrupt handler) is charged to whichever task
was interrupted, for both tools alike, and is not in these numbers.

    sudo .venv/bin/python benchmarks/chain_vs_perf.py --duration 120
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_load import start_churn, stop_churn  # benchmarks/ is sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = ROOT / ".venv" / "bin"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


SYNTHETIC = """
import json, sys, time
n = int(sys.argv[1])
while True:
    t = int(time.time())
    meta = {"from_ns": t * 10**9, "until_ns": (t + 1) * 10**9, "sample_rate": 100, "labels": {}}
    lines = ["# ebpf-profiler " + json.dumps(meta)]
    lines += [f"proc{i % 7};main;worker{i % 13};fn{i};leaf{i} {1 + i % 5}" for i in range(n)]
    lines.append("# ebpf-profiler-window-end")
    sys.stdout.write("\\n".join(lines) + "\\n")
    sys.stdout.flush()
    time.sleep(t + 1 - time.time())
"""


def proc_stat(pid: int) -> tuple[str, float, int] | None:
    """(command, CPU seconds incl. reaped children, RSS bytes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    cpu = sum(int(x) for x in fields[11:13]) / TICK  # utime stime (children: own pids)
    name = next((Path(a.decode()).name for a in argv[:3]
                 if a and Path(a.decode()).name.startswith(("ebpf-", "perf", "gen.py"))),
                Path(argv[0].decode()).name if argv and argv[0] else "?")
    return name, cpu, rss_pages * PAGE


def group_pids(pgid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getpgid(int(d)) == pgid:
                    out.append(int(d))
            except OSError:
                pass
    return out


def measure(cmd: str, duration: float, interval: float, label: str) -> dict:
    p = subprocess.Popen(["bash", "-c", cmd], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    series: list[dict] = []
    cpu_last: dict[int, tuple[str, float]] = {}
    while time.monotonic() - start < duration and p.poll() is None:
        time.sleep(interval)
        snap: dict[str, dict[str, float]] = {}
        for pid in group_pids(p.pid):
            st = proc_stat(pid)
            if st is None:
                continue
            name, cpu, rss = st
            if name in ("bash", "sleep", "tee", "gen.py"):
                continue
            cpu_last[pid] = (name, cpu)
            s = snap.setdefault(name, {"rss": 0.0})
            s["rss"] += rss
        cpu_by: dict[str, float] = {}
        for name, cpu in cpu_last.values():
            cpu_by[name] = cpu_by.get(name, 0.0) + cpu
        series.append({"t": round(time.monotonic() - start, 1),
                       "cpu_s": {k: round(v, 3) for k, v in cpu_by.items()},
                       "rss_mb": {k: round(v["rss"] / 2**20, 1) for k, v in snap.items()}})
    elapsed = time.monotonic() - start
    os.killpg(p.pid, signal.SIGINT)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
    total_cpu = sum(cpu for _, cpu in cpu_last.values())
    return {"label": label, "command": cmd, "elapsed_s": round(elapsed, 1),
            "cpu_pct_of_one_core": round(100 * total_cpu / elapsed, 2),
            "series": series, "stderr_tail": err.decode(errors="replace")[-600:]}


def rss_summary(series: list[dict], warmup_s: float) -> tuple[float, float, float]:
    after = [s for s in series if s["t"] >= warmup_s] or series
    totals = [sum(s["rss_mb"].values()) for s in after]
    return totals[0], totals[-1], max(totals)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=120.0, help="seconds per tool (120)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between readings")
    ap.add_argument("--sample-rate", type=int, default=100)
    ap.add_argument("--json", type=Path, help="write all readings here")
    ap.add_argument("--uploader-only", action="store_true",
                    help="measure ebpf-upload alone, fed a synthetic 1-window-per-second "
                    "folded stream (--stacks unique stacks per window) instead of the chain")
    ap.add_argument("--stacks", type=int, default=300)
    ap.add_argument("--churn", type=float, default=0.0, metavar="PER_SECOND",
                    help="start this many short-lived Python processes per second while "
                    "each tool runs, as on a busy host (default 0)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("chain_vs_perf: run as root (BPF and system-wide perf)", file=sys.stderr)
        return 4
    from tests.receiver import Receiver

    tmp = Path(tempfile.mkdtemp(prefix="chain-bench-"))
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures"), f"OUT={tmp}"], check=True)
    load = subprocess.Popen([str(tmp / "workload-pie"), str(int(args.duration * 2 + 120))],
                            stdout=subprocess.DEVNULL)
    results = []
    try:
        with Receiver() as rx:
            source = (f"{BIN}/ebpf-record --out - --sample-rate {args.sample_rate}"
                      f" | {BIN}/ebpf-symbolize -")
            if args.uploader_only:
                gen = tmp / "gen.py"
                gen.write_text(SYNTHETIC)
                source = f"{sys.executable} {gen} {args.stacks}"
            chain = (f"{source} | {BIN}/ebpf-upload - --server-address {rx.url}"
                     f" --application-name bench --spool-dir {tmp}/spool")
            churn = start_churn(args.churn)
            try:
                results.append(measure(chain, args.duration, args.interval, "chain"))
            finally:
                stop_churn(churn)
            uploads, samples = len(rx.ingests), sum(i.total for i in rx.ingests)
        perf = shutil.which("perf") or "perf"
        churn = start_churn(args.churn)
        try:
            results.append(measure(f"{perf} record -F {args.sample_rate} -a -g -q "
                                   f"-o {tmp}/perf.data", args.duration, args.interval, "perf"))
        finally:
            stop_churn(churn)
    finally:
        load.terminate()
    warm = min(30.0, args.duration / 4)
    print(f"\nContinuous mode, {args.sample_rate} Hz, system-wide, {args.duration:.0f} s per "
          f"tool, readings every {args.interval:.0f} s, RSS after {warm:.0f} s warm-up\n")
    print("| tool | CPU (% of one core) | RSS first (MiB) | RSS last (MiB) | RSS max (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        first, last, peak = rss_summary(r["series"], warm)
        print(f"| {r['label']} | {r['cpu_pct_of_one_core']:.2f} | {first:.1f} | {last:.1f} "
              f"| {peak:.1f} |")
    chain_r = results[0]
    last = chain_r["series"][-1] if chain_r["series"] else {"cpu_s": {}, "rss_mb": {}}
    print("\nchain by command (CPU s, RSS MiB at the end): " + ", ".join(
        f"{k} {last['cpu_s'].get(k, 0):.1f} s / {last['rss_mb'].get(k, 0):.0f} MiB"
        for k in sorted(last["rss_mb"])))
    print(f"chain uploads received: {uploads} windows, {samples} samples")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
