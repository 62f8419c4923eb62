#!/usr/bin/env python3
"""What Python frames cost (issue 14): BPF time per sample of a CPython process with and
without `--python`, and ebpf-record against py-spy (`py-spy record --native`) on the same
workload: the shares each finds and the sampler's CPU.

BPF time per sample is measured as benchmarks/bpf_cost.py does (kernel.bpf_stats_enabled:
the kernel sums each program's run time, tail calls included, in its fdinfo; the recorder's
program fds are duplicated so the sums outlive it; the cost of the samples the --pid filter
drops is measured on a sleeping target and subtracted). The target is the shares workload of
the tests (tests/helpers/shares.py: alpha, beta, gamma calling work() with 1:2:1 of its CPU),
endless, on each interpreter given; the first WARMUP seconds of each recording
(stack copies, code-object reads) are left out.

The py-spy comparison attaches each sampler in turn to one running workload (`--pid`, the same
rate and duration), so both see the same process; a sampler's CPU is its own user + system
time (wait4), ebpf-record's also without its start-up (the BPF compile: its summary line).
py-spy comes from PyPI into a throwaway venv (`python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip
install py-spy`); without it that part is skipped.

    sudo .venv/bin/python benchmarks/python_cost.py                 # ~4 min
    sudo .venv/bin/python benchmarks/python_cost.py --python /usr/bin/python3.11 \
        --python /root/.pyenv/versions/3.8.18/bin/python3
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bpf_cost import (  # benchmarks/ is sys.path[0]
    bpf_stats_enabled,
    grab_perf_event_progs,
    ns_per_sample,
    prog_stats,
)
from record_vs_perf import BIN, READY_TIMEOUT, BenchError, bench_dir

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from recording.reader import read_table  # noqa: E402

# the shares workload of the tests (1:2:1 of work()'s CPU), run endless: no argument
SHARES = ROOT / "tests" / "helpers" / "shares.py"
WORKLOAD = SHARES.read_text()  # python_busy.py writes it out as its own shares.py
FUNCS = ("alpha", "beta", "gamma")
PY_SPY = Path("/tmp/pyspy/bin/py-spy")
WARMUP = 3.0  # seconds of a recording left out of the BPF cost
EAGER = "--python, first two windows"
_STEADY = re.compile(r"recorder CPU [\d.]+ s \(([\d.]+) s after start-up")


@dataclass
class Cost:
    python: str
    flag: str  # --python / --no-python / (filtered)
    samples: int = 0
    run_cnt: int = 0
    run_time_ns: int = 0
    frames: float = 0.0  # median user stack entries (a Python frame takes two)
    ns_per_sample: float = 0.0


class Workload:
    def __init__(self, python: str, script: Path) -> None:
        self.proc = subprocess.Popen([python, str(script)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline() != "ready\n":
            raise BenchError(f"{python} {script} did not start")

    def close(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def _wait_for(err_path: Path, rec: subprocess.Popen, text: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while text not in err_path.read_text():
        if rec.poll() is not None or time.monotonic() > deadline:
            raise BenchError("ebpf-record did not start: " + err_path.read_text()[-300:])
        time.sleep(0.01)


def record(pid: int, flag: str, seconds: float, out: Path, rate: int = 100,
           grab: bool = False, interval: int = 1) -> tuple[tuple[int, int, int], float, str]:
    """((run_time_ns, run_cnt) of on_sample from the first drain (a whole multiple of
    `interval` seconds) WARMUP s after the recorder samples to its end, and that drain's time
    in ns, or zeros; the recorder's CPU; its stderr)."""
    err_path = out.with_suffix(".err")
    with err_path.open("w") as err:
        rec = subprocess.Popen([str(BIN / "ebpf-record"), "--no-progress", "--out", str(out),
                                "--pid", str(pid), flag, "--sample-rate", str(rate),
                                "--duration", str(seconds), "--drain-interval", str(interval)],
                               stdout=subprocess.DEVNULL, stderr=err)
    fds: dict[str, int] = {}
    try:
        _wait_for(err_path, rec, "ebpf-record: sampling")
        start = (0, 0, 0)
        if grab:
            fds = grab_perf_event_progs(rec.pid)
            # The process's first samples cost more (stack copies until its tables are in the
            # kernel, code objects read): leave them out. Drains, hence windows, fall on whole
            # seconds (recorder/session.py), so the samples of the windows from that second on
            # are the ones these counters see (give or take the drain's lag).
            second = (int((time.time() + WARMUP) / interval) + 1) * interval
            time.sleep(max(0.0, second + 0.02 - time.time()))
            start = (*prog_stats(fds["on_sample"]), second * 10**9)
        _, status, usage = os.wait4(rec.pid, 0)
        rec.returncode = os.waitstatus_to_exitcode(status)
        if rec.returncode != 0:
            raise BenchError("ebpf-record failed: " + err_path.read_text()[-300:])
        stats = (0, 0, 0)
        if grab:
            t, n = prog_stats(fds["on_sample"])
            stats = (t - start[0], n - start[1], start[2])
    finally:
        for fd in fds.values():
            os.close(fd)
        if rec.poll() is None:
            rec.kill()
            rec.wait()
    return stats, usage.ru_utime + usage.ru_stime, err_path.read_text()


def bpf_cost(python: str, script: Path, seconds: float, tmp: Path) -> list[Cost]:
    out = []
    sleeper = subprocess.Popen(["sleep", str(seconds + 120)])
    try:
        (t, n, _), _, _ = record(sleeper.pid, "--python", seconds,
                                 tmp / "filtered.parquet", grab=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    filtered = Cost(python, "(filtered)", 0, n, t, 0.0, t / n if n else 0.0)
    out.append(filtered)
    # A process's first two drain windows are eager (recorder/python/frames.py): each code
    # object a sample meets is looked up in an LRU map, so that those seen for the first time
    # are read at once. With 10 s windows, the samples from the first drain WARMUP s in
    # (second 10 or 20) to second 20 are all in that time.
    for label, flag, interval, length in (("--python", "--python", 1, seconds),
                                          ("--no-python", "--no-python", 1, seconds),
                                          (EAGER, "--python", 10, 20.0)):
        w = Workload(python, script)
        try:
            path = tmp / f"cost{flag}-{interval}s.parquet"
            (t, n, since_ns), _, _ = record(w.proc.pid, flag, length, path, grab=True,
                                            interval=interval)
        finally:
            w.close()
        rows = [r for r in read_table(str(path)).to_pylist()
                if r["record"] in ("sample", "window") and r["window_start_ns"] >= since_ns]
        samples = sum(r["count"] + (r["lost_samples"] or 0) for r in rows
                      if r["record"] == "window")
        lengths = [len(r["user_stack"]) for r in rows if r["record"] == "sample"
                   for _ in range(r["count"])]
        c = Cost(python, label, samples, n, t, statistics.median(lengths) if lengths else 0)
        c.ns_per_sample = ns_per_sample(t, n, samples, filtered.ns_per_sample)
        out.append(c)
    return out


def shares(stacks: Counter[tuple[str, ...]]) -> tuple[dict[str, float], int, int]:
    """Shares of alpha/beta/gamma as work()'s caller; the samples with one; all samples."""
    by: Counter[str] = Counter()
    for frames, n in stacks.items():
        if "work" in frames and frames.index("work") > 0:
            caller = frames[frames.index("work") - 1]
            if caller in FUNCS:
                by[caller] += n
    total = sum(by.values()) or 1
    return {f: by[f] / total for f in FUNCS}, sum(by.values()), sum(stacks.values())


def _folded(text: str, name_of) -> Counter[tuple[str, ...]]:
    """Python frames of the workload per folded stack; name_of(frame) -> name or None."""
    out: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        stack, n = line.rsplit(" ", 1)
        out[tuple(x for x in (name_of(f) for f in stack.split(";")) if x)] += int(n)
    return out


def ebpf_vs_pyspy(python: str, script: Path, seconds: float, rate: int, tmp: Path
                  ) -> list[str]:
    w = Workload(python, script)
    try:
        path = tmp / "ours.parquet"
        _, cpu, err = record(w.proc.pid, "--python", seconds, path, rate=rate)
        steady = _STEADY.search(err)
        s = subprocess.run([str(BIN / "ebpf-symbolize"), str(path)], capture_output=True,
                           text=True, check=True)
        ours = _folded(s.stdout, lambda f: f.split(" ", 1)[1] if f.startswith("work.py ")
                       else None)
        spy_out = tmp / "spy.txt"
        t0 = time.monotonic()
        spy = subprocess.Popen([str(PY_SPY), "record", "--native", "--nolineno", "--format",
                                "raw", "--rate", str(rate), "--duration", str(round(seconds)),
                                "--pid", str(w.proc.pid), "--output", str(spy_out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(spy.pid, 0)
        spy.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        if spy.returncode != 0:
            raise BenchError("py-spy failed: " + (spy.stderr.read().decode()[-300:]
                                                  if spy.stderr else ""))
        # py-spy names a Python frame `function (file.py)` with --nolineno
        theirs = _folded(spy_out.read_text(), lambda f: f.split(" (", 1)[0]
                         if f.endswith("(work.py)") else None)
    finally:
        w.close()
    a, an, at = shares(ours)
    b, bn, bt = shares(theirs)
    spy_cpu = usage.ru_utime + usage.ru_stime
    lines = [f"{python}, {seconds:g} s at {rate} Hz, one process (ebpf-record samples its "
             "on-CPU time, py-spy the wall-clock time of its non-idle threads):", "",
             "| sampler | samples | with work()'s caller | alpha | beta | gamma | sampler CPU "
             "(s) | % of one core |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    steady_cpu = float(steady.group(1)) if steady else None
    lines.append(f"| ebpf-record --python | {at:,} | {an:,} | {a['alpha']:.3f} | "
                 f"{a['beta']:.3f} | {a['gamma']:.3f} | {cpu:.2f} (after start-up "
                 f"{steady_cpu if steady_cpu is not None else float('nan'):.2f}) | "
                 f"{100 * (steady_cpu or cpu) / seconds:.1f} |")
    lines.append(f"| py-spy record --native | {bt:,} | {bn:,} | {b['alpha']:.3f} | "
                 f"{b['beta']:.3f} | {b['gamma']:.3f} | {spy_cpu:.2f} | "
                 f"{100 * spy_cpu / wall:.1f} |")
    diff = max(abs(a[f] - b[f]) for f in FUNCS)
    ratio = spy_cpu / steady_cpu if steady_cpu else float("nan")
    lines += ["", f"largest share difference {diff:.3f} (design 0.25/0.50/0.25); py-spy's CPU "
              f"/ ebpf-record's after start-up: {ratio:.1f}x"]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", action="append", metavar="EXE",
                    help="interpreter (repeatable; default /usr/bin/python3.11)")
    ap.add_argument("--seconds", type=float, default=20.0, help="per recording (default 20)")
    ap.add_argument("--rate", type=int, default=100, help="py-spy comparison's Hz (100)")
    ap.add_argument("--repeats", type=int, default=3, help="BPF cost runs (default 3)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("python_cost: run as root (BPF, kernel.bpf_stats_enabled)", file=sys.stderr)
        return 4
    script = SHARES
    with bench_dir("python_cost", "python-cost-") as tmp:
        lines = [f"BPF time per sample, median (min–max) of {args.repeats} runs of "
                 f"{args.seconds:g} s at 100 Hz:", "",
                 "| interpreter | ebpf-record | samples | user stack entries (median) | BPF ns "
                 "per sample |", "|---|---|---:|---:|---:|"]
        for python in args.python or ["/usr/bin/python3.11"]:
            runs: list[Cost] = []
            with bpf_stats_enabled():
                for rep in range(args.repeats):
                    print(f"python_cost: {python} BPF cost {rep + 1}/{args.repeats} ...",
                          file=sys.stderr)
                    runs += bpf_cost(python, script, args.seconds, tmp)
            per = {}
            for flag in ("(filtered)", "--python", "--no-python", EAGER):
                mine = [r for r in runs if r.flag == flag]
                ns = [r.ns_per_sample for r in mine]
                per[flag] = statistics.median(ns)
                samples = statistics.median(r.samples for r in mine)
                lines.append(f"| {python} | {flag} | {samples:,.0f}"
                             f" | {statistics.median(r.frames for r in mine):.0f} | "
                             f"{per[flag]:,.0f} ({min(ns):,.0f}–{max(ns):,.0f}) |")
            lines.append(f"| {python} | --python / --no-python | | | "
                         f"{per['--python'] / per['--no-python']:.2f}x |")
            lines.append(f"| {python} | first two windows / after | | | "
                         f"{per[EAGER] / per['--python']:.2f}x |")
        print("\n".join(lines), flush=True)
        if PY_SPY.exists():
            for python in args.python or ["/usr/bin/python3.11"]:
                print(f"python_cost: {python} against py-spy ...", file=sys.stderr)
                print("\n" + "\n".join(ebpf_vs_pyspy(python, script, args.seconds, args.rate,
                                                     tmp)))
        else:
            print(f"\n(no {PY_SPY}: py-spy comparison skipped)")
        load = os.getloadavg()
        print(f"\nkernel {os.uname().release}, {os.cpu_count()} CPUs, load average "
              f"{load[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
