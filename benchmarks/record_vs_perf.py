#!/usr/bin/env python3
"""ebpf-record against `perf record -g` at the same frequency, on the same CPU-bound work.

Each repeat runs the fixture workload with a fixed amount of work (WORKLOAD_ROUNDS, calibrated
to about --seconds of CPU) three ways, in turn, so that drift in background load hits all
three alike:

  a. alone (baseline);
  b. while `perf record -e cpu-clock -g -F HZ -a -N` records the whole system;
  c. while `ebpf-record --out run.parquet --sample-rate HZ` records the whole system.

Each tool is started first and the workload only once the tool is sampling (perf: it answers
`ping` on its --control fd, which it reads only from its main loop, after synthesizing the
existing processes and enabling its events; ebpf-record: its first progress line, printed after
the first drain), and 2 s more so that ebpf-record's first snapshot of every running process
is start-up, not steady state; the tool is stopped with SIGINT as soon as the workload exits.

Reported, as ratios:
  - slowdown: the workload's wall and CPU time (its rusage from wait4) under each tool over the
    baseline run of the same repeat, median over repeats. The kernel-side sampling cost (perf's
    interrupt handler, the BPF program) is charged to the interrupted task, so it shows here;
  - own CPU: user + system time of the tool's process, total (os.wait4 rusage: start-up,
    bcc's clang compile, the final write) and steady state (/proc/PID/task/*/schedstat, in ns,
    across the workload's run only) as % of one core;
  - bytes per sample: file size over samples recorded (perf: from its "Captured and wrote"
    line; ebpf-record: from its summary line).

perf gets -N (--no-buildid-cache): it still writes the build IDs of the objects hit into
perf.data, but does not copy every object into ~/.debug, which ebpf-record does not do either.
The machine may be shared: the background CPU (busy time from /proc/stat minus the workload
and the tool) is printed with the results.

    sudo .venv/bin/python benchmarks/record_vs_perf.py            # make bench-perf
    sudo .venv/bin/python benchmarks/record_vs_perf.py --repeats 5 --seconds 10 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bench_load import start_churn, stop_churn  # benchmarks/ is sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
TICK = os.sysconf("SC_CLK_TCK")
WORKLOAD = "workload-pie"
READY_TIMEOUT = 120.0
# After a tool is ready, before the workload starts: ebpf-record snapshots every process at
# its first sample, a burst that belongs to start-up, not to steady state.
SETTLE_SECONDS = 2.0

# ebpf-record's closing line, e.g. "ebpf-record: 1,234 samples (0 lost), ... 56,789 bytes to
# run.parquet in 9.1 s; recorder CPU 1.02 s (0.05 s after start-up, 0.55% of one core)".
SUMMARY = re.compile(r"ebpf-record: ([\d,]+) samples \(([\d,]+) lost\).*? ([\d,]+) bytes to "
                     r".*?recorder CPU ([\d.]+) s \(([\d.]+) s after start-up")
PERF_WROTE = re.compile(r"Captured and wrote [\d.]+ MB .*?\((\d+) samples\)")


@dataclass
class Run:
    mode: str  # baseline | perf | ebpf-record
    repeat: int
    wall_s: float = 0.0  # the workload's
    cpu_s: float = 0.0  # the workload's user + system
    background_cores: float = 0.0  # other CPU use during the workload, in cores
    tool_cpu_total_s: float = 0.0
    tool_cpu_steady_s: float = 0.0  # during the workload's run only
    tool_steady_pct: float = 0.0  # of one core
    tool_reported_steady_s: float | None = None  # ebpf-record's own "after start-up" figure
    samples: int = 0
    lost: int = 0
    workload_samples: int = 0  # of the benchmark's workload process (by pid)
    idle_samples: int = 0  # perf: of the idle task (pid 0); ebpf-record leaves them out
    workload_pid: int = 0
    workload_start_ns: int = 0
    workload_end_ns: int = 0
    # ebpf-record's file: process snapshots taken while the workload ran (the per-process
    # cost: /proc/PID/maps read and parsed for each process seen, exec'd or mmap'ing code),
    # Parquet row groups and footer bytes.
    snapshots_per_s: float = 0.0
    row_groups: int = 0
    footer_bytes: int = 0
    file_bytes: int = 0

    @property
    def bytes_per_sample(self) -> float:
        return self.file_bytes / self.samples if self.samples else float("nan")


class BenchError(Exception):
    pass


@contextlib.contextmanager
def bench_dir(prog: str, prefix: str) -> Iterator[Path]:
    """The work directory of one benchmark run, removed at its end; a BenchError ends the
    run with its message on one line and exit code 1."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    except BenchError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- measuring ---------------------------------------------------------------------------------
def task_cpu_ns(pid: int) -> int:
    """On-CPU time of every thread of pid, in ns (first field of schedstat), user + system."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total


def machine_busy_s() -> float:
    """CPU seconds spent not idle, summed over all CPUs, since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICK  # guest time is already inside user


def wait_rusage(p: subprocess.Popen) -> tuple[int, float]:
    """Reap p; its exit code and its user + system CPU seconds (incl. reaped children)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_utime + ru.ru_stime


def run_workload(exe: Path, rounds: int, run: Run, tool_pid: int | None) -> None:
    env = {**os.environ, "WORKLOAD_ROUNDS": str(rounds)}
    busy0 = machine_busy_s()
    tool0 = task_cpu_ns(tool_pid) if tool_pid else 0
    t0 = time.monotonic()
    run.workload_start_ns = time.time_ns()
    p = subprocess.Popen([str(exe), "0"], env=env, stdout=subprocess.DEVNULL)
    run.workload_pid = p.pid
    code, cpu = wait_rusage(p)
    run.wall_s = time.monotonic() - t0
    run.workload_end_ns = time.time_ns()
    tool_ns = task_cpu_ns(tool_pid) - tool0 if tool_pid else 0
    busy = machine_busy_s() - busy0
    if code != 0:
        raise BenchError(f"the workload exited with {code}")
    run.cpu_s = cpu
    run.tool_cpu_steady_s = tool_ns / 1e9
    run.tool_steady_pct = 100.0 * run.tool_cpu_steady_s / run.wall_s
    run.background_cores = max(0.0, busy - cpu - run.tool_cpu_steady_s) / run.wall_s


# -- the tools ---------------------------------------------------------------------------------
def start_perf(record_args: list[str], err) -> tuple[subprocess.Popen, tuple[int, int]]:
    """`perf record ARGS`, returned once it samples; and its control fds, to close after it
    exits. Stop it with SIGINT."""
    ctl_r, ctl_w = os.pipe()
    ack_r, ack_w = os.pipe()
    perf = shutil.which("perf") or "/usr/bin/perf"
    p = subprocess.Popen([perf, "record", *record_args, "--control", f"fd:{ctl_r},{ack_w}"],
                         pass_fds=(ctl_r, ack_w), stdout=subprocess.DEVNULL, stderr=err)
    os.close(ctl_r)
    os.close(ack_w)
    os.write(ctl_w, b"ping\n")
    ready, _, _ = select.select([ack_r], [], [], READY_TIMEOUT)
    if not ready or not os.read(ack_r, 64).startswith(b"ack"):
        os.kill(p.pid, signal.SIGINT)
        p.wait()
        raise BenchError("perf record did not start (no ack on its --control fd): "
                         + _tail(err))
    return p, (ctl_w, ack_r)


def with_perf(exe: Path, rounds: int, run: Run, tmp: Path, rate: int) -> None:
    out = tmp / f"perf-{run.repeat}.data"
    perf = shutil.which("perf") or "/usr/bin/perf"
    err = (tmp / "perf.err").open("w+")
    p, fds = start_perf(["-e", "cpu-clock", "-g", "-F", str(rate), "-a", "-N", "-o", str(out)],
                        err)
    try:
        time.sleep(SETTLE_SECONDS)
        run_workload(exe, rounds, run, p.pid)
    finally:
        os.kill(p.pid, signal.SIGINT)
        code, run.tool_cpu_total_s = wait_rusage(p)
        for fd in fds:
            os.close(fd)
    text = _tail(err, 4000)
    m = PERF_WROTE.search(text)
    # perf re-raises the SIGINT it stopped on after writing its file.
    if code not in (0, -signal.SIGINT) or not m:
        raise BenchError(f"perf record failed ({code}): {text.strip()[-300:]}")
    run.samples = int(m.group(1))
    run.file_bytes = out.stat().st_size
    run.workload_samples, run.idle_samples = _perf_samples_of(perf, out, run.workload_pid)
    out.unlink()


def _perf_samples_of(perf: str, data: Path, pid: int) -> tuple[int, int]:
    """Samples of pid, and of the idle task. By pid, not name: others on the machine may
    run the same fixture."""
    got = subprocess.run([perf, "script", "-i", str(data), "-F", "pid"], capture_output=True,
                         text=True, check=False)
    pids = [line.strip() for line in got.stdout.splitlines()]
    return pids.count(str(pid)), pids.count("0")


def with_ebpf_record(exe: Path, rounds: int, run: Run, tmp: Path, rate: int,
                     recorder: Path) -> None:
    out = tmp / f"run-{run.repeat}.parquet"
    err_path = tmp / "ebpf-record.err"
    err = err_path.open("w+")
    # --progress: its first line, printed after the first drain, says the BPF program is
    # attached and sampling.
    p = subprocess.Popen([str(recorder), "--out", str(out), "--sample-rate",
                          str(rate), "--progress"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while "samples" not in err_path.read_text():
            if p.poll() is not None or time.monotonic() > deadline:
                raise BenchError("ebpf-record did not start: " + _tail(err))
            time.sleep(0.05)
        time.sleep(SETTLE_SECONDS)
        run_workload(exe, rounds, run, p.pid)
    finally:
        if p.returncode is None:
            os.kill(p.pid, signal.SIGINT)
            code, run.tool_cpu_total_s = wait_rusage(p)
        else:
            code = p.returncode
    text = err_path.read_text()
    m = SUMMARY.search(text)
    if code != 0 or not m:
        raise BenchError(f"ebpf-record failed ({code}): {text.strip()[-300:]}")
    run.samples = int(m.group(1).replace(",", ""))
    run.lost = int(m.group(2).replace(",", ""))
    run.tool_reported_steady_s = float(m.group(5))
    run.file_bytes = out.stat().st_size
    _parquet_facts(out, run)
    out.unlink()


def _parquet_facts(path: Path, run: Run) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    run.row_groups = f.metadata.num_row_groups
    run.footer_bytes = f.metadata.serialized_size
    t = f.read(columns=["record", "pid", "count", "time_ns"])
    mine = pc.and_(pc.equal(t["record"], "sample"), pc.equal(t["pid"], run.workload_pid))
    run.workload_samples = int(pc.sum(t.filter(mine)["count"]).as_py() or 0)
    snaps = t.filter(pc.equal(t["record"], "process"))["time_ns"].to_pylist()
    during = sum(1 for ns in snaps if ns and run.workload_start_ns <= ns <= run.workload_end_ns)
    run.snapshots_per_s = during / run.wall_s


def _tail(f, n: int = 300) -> str:
    f.flush()
    f.seek(0)
    return f.read()[-n:]


# -- reporting ---------------------------------------------------------------------------------
TOOLS = ("perf", "ebpf-record")


def paired_ratios(runs: list[Run], mode: str, attr: str) -> list[float]:
    """Each run of mode over the baseline run of its repeat: drift cancels within a repeat."""
    base = {r.repeat: getattr(r, attr) for r in runs if r.mode == "baseline"}
    return [getattr(r, attr) / base[r.repeat] for r in runs if r.mode == mode]


def spread(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    med = format(statistics.median(values), fmt)
    return med if len(values) == 1 else f"{med} ({min(values):{fmt}}–{max(values):{fmt}})"


def report(runs: list[Run], args: argparse.Namespace, rounds: int) -> tuple[str, dict]:
    def of(mode: str, attr: str) -> list[float]:
        return [float(getattr(r, attr)) for r in runs if r.mode == mode]

    slowdown = {(m, a): paired_ratios(runs, m, a) for m in TOOLS for a in ("wall_s", "cpu_s")}
    # (label, values per mode, format, ratio ebpf-record/perf shown)
    table: list[tuple[str, dict[str, list[float]], str, bool]] = [
        ("workload wall time, s", {m: of(m, "wall_s") for m in ("baseline", *TOOLS)}, ".2f",
         False),
        ("workload CPU time, s", {m: of(m, "cpu_s") for m in ("baseline", *TOOLS)}, ".2f",
         False),
        ("slowdown, wall (over alone, same repeat)",
         {m: slowdown[m, "wall_s"] for m in TOOLS}, ".3f", True),
        ("slowdown, workload CPU", {m: slowdown[m, "cpu_s"] for m in TOOLS}, ".3f", True),
        ("tool CPU total incl. start-up, s", {m: of(m, "tool_cpu_total_s") for m in TOOLS},
         ".2f", True),
        ("tool CPU steady state, % of one core", {m: of(m, "tool_steady_pct") for m in TOOLS},
         ".3f", True),
        ("samples in the file", {m: of(m, "samples") for m in TOOLS}, ",.0f", True),
        ("of them the workload's", {m: of(m, "workload_samples") for m in TOOLS}, ",.0f",
         True),
        ("of them the idle task's", {m: of(m, "idle_samples") for m in TOOLS}, ",.0f", False),
        ("file size, bytes", {m: of(m, "file_bytes") for m in TOOLS}, ",.0f", True),
        ("bytes per sample", {m: [r.bytes_per_sample for r in runs if r.mode == m]
                              for m in TOOLS}, ",.0f", True),
    ]
    medians = {label: {m: statistics.median(v) for m, v in vals.items() if v}
               for label, vals, _, _ in table}
    lines = [
        f"{args.repeats} repeat(s) of (alone, perf record, ebpf-record); {rounds:,} rounds of "
        f"the fixture workload per run; {args.sample_rate} Hz, system-wide; "
        "median (min–max) over repeats",
        "",
        "| | alone | `perf record -g` | `ebpf-record` | ebpf-record / perf |",
        "|---|---:|---:|---:|---:|",
    ]
    ratios: dict[str, float] = {}
    for label, vals, fmt, show_ratio in table:
        cells = [spread(vals.get(m, []), fmt) if m in vals else ("1" if "slowdown" in label
                                                                 else "–")
                 for m in ("baseline", *TOOLS)]
        ratio = ""
        if show_ratio and medians[label].get("perf"):
            ratios[label] = medians[label]["ebpf-record"] / medians[label]["perf"]
            ratio = f"{ratios[label]:.3g}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    ebpf = [r for r in runs if r.mode == "ebpf-record"]
    own = [r.tool_reported_steady_s for r in ebpf if r.tool_reported_steady_s is not None]
    wall = medians["slowdown, wall (over alone, same repeat)"]
    cpu = medians["slowdown, workload CPU"]
    steady = medians["tool CPU steady state, % of one core"]["ebpf-record"]
    bps = ratios.get("bytes per sample", float("nan"))
    lines += [
        "",
        f"Background CPU while the workload ran (everything but the workload and the tool): "
        f"{spread([r.background_cores for r in runs], '.2f')} cores of {os.cpu_count()}.",
        f"ebpf-record's own 'after start-up' CPU figure: {spread(own, '.2f')} s per run; "
        f"samples it lost: {sum(r.lost for r in ebpf)}.",
        f"ebpf-record process snapshots per second while the workload ran: "
        f"{spread([r.snapshots_per_s for r in ebpf], '.1f')}; its files had "
        f"{spread([float(r.row_groups) for r in ebpf], '.0f')} Parquet row groups and "
        f"{spread([float(r.footer_bytes) for r in ebpf], ',.0f')} bytes of footer.",
        "",
        "Targets:",
        _target("slowdown (workload CPU) no worse than perf's",
                cpu["ebpf-record"] <= cpu["perf"],
                f"{cpu['ebpf-record']:.3f} vs {cpu['perf']:.3f}"),
        _target("slowdown (wall) no worse than perf's", wall["ebpf-record"] <= wall["perf"],
                f"{wall['ebpf-record']:.3f} vs {wall['perf']:.3f}"),
        _target("own CPU under 1% of one core, steady state", steady < 1.0, f"{steady:.3f}%"),
        _target("bytes per sample at most 1/4 of perf.data's", bps <= 0.25, f"{bps:.3f}"),
    ]
    return "\n".join(lines), {"medians": medians, "ratios": ratios}


def _target(what: str, met: bool, figure: str) -> str:
    return f"- {what}: {'met' if met else 'MISSED'} ({figure})"


# -- main --------------------------------------------------------------------------------------
def calibrate(exe: Path, seconds: float) -> int:
    """Rounds that take about `seconds` of CPU, from a short run (also a warm-up)."""
    probe = 1500
    run = Run("calibration", 0)
    run_workload(exe, probe, run, None)
    return max(probe, int(probe * seconds / max(run.cpu_s, 1e-3)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="rounds of (alone, perf, "
                    "ebpf-record) (default 3)")
    ap.add_argument("--seconds", type=float, default=10.0, help="CPU seconds of work per "
                    "run, calibrated once at start (default 10)")
    ap.add_argument("--rounds", type=int, help="workload rounds per run (overrides --seconds)")
    ap.add_argument("--sample-rate", type=int, default=100, metavar="HZ")
    ap.add_argument("--json", type=Path, help="write every run's figures here")
    ap.add_argument("--recorder", type=Path, default=BIN / "ebpf-record", metavar="PATH",
                    help="the ebpf-record executable to measure, to compare a change "
                    "(default .venv/bin/ebpf-record)")
    ap.add_argument("--churn", type=float, default=0.0, metavar="PER_SECOND",
                    help="start this many short-lived Python processes per second during "
                    "every run, as on a busy host (default 0: a quiet machine)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("record_vs_perf: run as root (BPF and system-wide perf)", file=sys.stderr)
        return 4
    if args.repeats < 1:
        print("record_vs_perf: --repeats must be at least 1", file=sys.stderr)
        return 2
    with bench_dir("record_vs_perf", "record-bench-") as tmp:
        subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures"), f"OUT={tmp}"], check=True)
        exe = tmp / WORKLOAD
        rounds = args.rounds or calibrate(exe, args.seconds)
        runs: list[Run] = []
        for i in range(args.repeats):
            for mode in ("baseline", "perf", "ebpf-record"):
                run = Run(mode, i)
                churn = start_churn(args.churn)
                try:
                    if mode == "baseline":
                        run_workload(exe, rounds, run, None)
                    elif mode == "perf":
                        with_perf(exe, rounds, run, tmp, args.sample_rate)
                    else:
                        with_ebpf_record(exe, rounds, run, tmp, args.sample_rate, args.recorder)
                finally:
                    stop_churn(churn)
                runs.append(run)
                print(f"record_vs_perf: repeat {i + 1}/{args.repeats} {mode:11} workload "
                      f"{run.wall_s:.2f} s wall, {run.cpu_s:.2f} s CPU, background "
                      f"{run.background_cores:.2f} cores; tool {run.tool_steady_pct:.2f}% "
                      f"steady, {run.tool_cpu_total_s:.2f} s total"
                      + (f", {run.snapshots_per_s:.1f} snapshots/s, "
                         f"{run.bytes_per_sample:.0f} B/sample" if run.samples else ""),
                      file=sys.stderr)
        text, summary = report(runs, args, rounds)
        print(text)
        if args.json:
            args.json.write_text(json.dumps({"rounds": rounds, **summary,
                                             "runs": [asdict(r) for r in runs]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
