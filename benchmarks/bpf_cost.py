#!/usr/bin/env python3
"""BPF time per sample of ebpf-record's perf-event program, for user stacks of ~10, 30 and
100 frames, `--call-graph dwarf` (the .eh_frame unwinder) against `fp` (the kernel's
frame-pointer walk), measured with kernel.bpf_stats_enabled (issue 10: under 5 us for 30
frames).

How it measures. With bpf_stats_enabled the kernel times every run of a BPF program
(kernel/bpf/syscall.c and include/linux/filter.h, bpf_prog_run: sched_clock() before and after
the program, added to the program's per-CPU run_time_ns, run_cnt += 1) and shows the sums in
/proc/PID/fdinfo of each program fd. A tail call (bpf_tail_call) jumps into the next program
without returning to bpf_prog_run, so the time of every `unwind_user` tail call is counted in
`on_sample`'s run_time_ns, and `unwind_user`'s own run_cnt stays 0: on_sample's figure is the
whole cost of a sample (the program's entry, both stacks, the unwinding, the map updates).

For each depth, fixtures/src/deep.c (`deep DEPTH SECONDS`: DEPTH recursive calls, spinning at
the bottom; deep-nofp for dwarf, deep-fp for fp) runs under `ebpf-record --pid P`. Once
ebpf-record prints its "sampling" line, this script duplicates its two perf-event program fds
(pidfd_getfd(2)), so the programs and their counters outlive the recorder, and reads them
after it exits: the totals of the whole run. on_sample also runs, and returns at once, for
samples of other processes and of idle CPUs (the --pid filter); their cost is measured in a
run whose target sleeps, and subtracted:

    ns per sample = (run_time_ns - (run_cnt - samples) * ns per filtered run) / samples

where `samples` is the recording's `samples` stat (counted by the program after the filter).
The frames per sample are the median user stack length in the recording.

    sudo .venv/bin/python benchmarks/bpf_cost.py               # ~5 min
    sudo .venv/bin/python benchmarks/bpf_cost.py --seconds 10 --depth 5 --depth 25
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
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

from record_vs_perf import BIN, READY_TIMEOUT, BenchError  # benchmarks/ is sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from recording.reader import read_table  # noqa: E402

SYS_BPF = 321  # x86-64
SYS_PIDFD_GETFD = 438
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_TYPE_PERF_EVENT = 7
NAME_OFFSET = 64  # struct bpf_prog_info: name[16] after map_ids (include/uapi/linux/bpf.h)
INFO_SIZE = 256
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
# deep DEPTH: main, DEPTH x descend, spin and the entry frames (_start,
# __libc_start_main, __libc_start_call_main): DEPTH + 5 user frames
EXTRA_FRAMES = 5

_libc = ctypes.CDLL(None, use_errno=True)


def _fdinfo(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def prog_name(fd: int) -> str:
    info = ctypes.create_string_buffer(INFO_SIZE)
    attr = ctypes.create_string_buffer(16)
    ctypes.memmove(attr, ctypes.byref(ctypes.c_uint32(fd)), 4)
    ctypes.memmove(ctypes.addressof(attr) + 4, ctypes.byref(ctypes.c_uint32(INFO_SIZE)), 4)
    ctypes.memmove(ctypes.addressof(attr) + 8, ctypes.byref(ctypes.c_uint64(
        ctypes.addressof(info))), 8)
    if _libc.syscall(SYS_BPF, BPF_OBJ_GET_INFO_BY_FD, attr, 16) != 0:
        raise BenchError(f"BPF_OBJ_GET_INFO_BY_FD: {os.strerror(ctypes.get_errno())}")
    return info.raw[NAME_OFFSET:NAME_OFFSET + 16].split(b"\0", 1)[0].decode()


def grab_perf_event_progs(pid: int) -> dict[str, int]:
    """Our own duplicates of pid's perf-event program fds, by program name."""
    pidfd = os.pidfd_open(pid)
    got = {}
    try:
        for name in os.listdir(f"/proc/{pid}/fdinfo"):
            with contextlib.suppress(OSError, ValueError):
                info = _fdinfo(f"/proc/{pid}/fdinfo/{name}")
                if info.get("prog_type") != str(BPF_PROG_TYPE_PERF_EVENT):
                    continue
                fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
                if fd < 0:
                    raise BenchError(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
                got[prog_name(fd)] = fd
    finally:
        os.close(pidfd)
    if "on_sample" not in got:
        raise BenchError(f"no on_sample program among the fds of pid {pid}: {sorted(got)}")
    return got


def prog_stats(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program, summed over CPUs (its fdinfo)."""
    info = _fdinfo(f"/proc/self/fdinfo/{fd}")
    return int(info["run_time_ns"]), int(info["run_cnt"])


@contextlib.contextmanager
def bpf_stats_enabled() -> Iterator[None]:
    """kernel.bpf_stats_enabled on for the block (without it run_time_ns and run_cnt stay 0),
    then as it was."""
    old = STATS.read_text().strip()
    STATS.write_text("1\n")
    try:
        yield
    finally:
        STATS.write_text(old + "\n")


def ns_per_sample(run_time_ns: int, run_cnt: int, samples: int, filtered_ns: float) -> float:
    """BPF ns per target sample: of run_cnt runs, all but `samples` were of other processes
    (or idle), which the --pid filter dropped at filtered_ns each."""
    return (run_time_ns - (run_cnt - samples) * filtered_ns) / samples


@dataclass
class Run:
    call_graph: str
    depth: int  # recursion depth given to deep; 0: the filtered-run baseline
    frames: float = 0.0  # median user stack length recorded
    samples: int = 0  # target samples (the recording's `samples` stat)
    run_cnt: int = 0  # on_sample runs, all CPUs, filtered ones included
    run_time_ns: int = 0
    unwind_user_run_cnt: int | None = None
    ns_per_sample: float = 0.0
    stops: str = ""
    repeat: int = 0


def measure(call_graph: str, depth: int, args: argparse.Namespace, bins: Path, tmp: Path
            ) -> Run:
    run = Run(call_graph, depth)
    if depth:
        exe = bins / ("deep-nofp" if call_graph == "dwarf" else "deep-fp")
        target = subprocess.Popen([str(exe), str(depth), str(args.seconds + 120)])
    else:  # a target that never runs: every sample is filtered out
        target = subprocess.Popen(["sleep", str(args.seconds + 120)])
    out = tmp / f"{call_graph}-{depth}.parquet"
    err_path = tmp / "rec.err"
    fds: dict[str, int] = {}
    try:
        with err_path.open("w") as err:
            rec = subprocess.Popen([str(args.recorder), "--no-progress", "--out", str(out),
                                    "--pid", str(target.pid), "--call-graph", call_graph,
                                    "--duration", str(args.seconds)],
                                   stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + READY_TIMEOUT
        while "ebpf-record: sampling" not in err_path.read_text():
            if rec.poll() is not None or time.monotonic() > deadline:
                raise BenchError("ebpf-record did not start: " + err_path.read_text()[-300:])
            time.sleep(0.01)
        fds = grab_perf_event_progs(rec.pid)
        if rec.wait(timeout=args.seconds + 120) != 0:
            raise BenchError("ebpf-record failed: " + err_path.read_text()[-300:])
        run.run_time_ns, run.run_cnt = prog_stats(fds["on_sample"])
        if "unwind_user" in fds:
            run.unwind_user_run_cnt = prog_stats(fds["unwind_user"])[1]
    finally:
        for fd in fds.values():
            os.close(fd)
        target.send_signal(signal.SIGKILL)
        target.wait()
    t = read_table(str(out)).to_pylist()
    stats = {r["key"]: r["value"] for r in t if r["record"] == "stats"}
    run.samples = int(stats["samples"])
    samples = [r for r in t if r["record"] == "sample" and r["user_stack"]]
    lengths = [len(r["user_stack"]) for r in samples for _ in range(r["count"])]
    run.frames = statistics.median(lengths) if lengths else 0.0
    stops: dict[str, int] = {}
    for r in samples:
        stops[r["user_stop"]] = stops.get(r["user_stop"], 0) + r["count"]
    run.stops = ", ".join(f"{k} {v}" for k, v in sorted(stops.items(), key=lambda kv: -kv[1]))
    return run


def row(cg: str, frames: str, runs: list[Run]) -> str:
    def med(values: list[float], fmt: str) -> str:
        if not values:
            return "–"
        m = format(statistics.median(values), fmt)
        return m if len(values) == 1 else f"{m} ({min(values):{fmt}}–{max(values):{fmt}})"

    unwind = [float(r.unwind_user_run_cnt) for r in runs if r.unwind_user_run_cnt is not None]
    return (f"| {cg} | {frames} | {med([float(r.samples) for r in runs], ',.0f')} | "
            f"{med([float(r.run_cnt) for r in runs], ',.0f')} | "
            f"{med([r.ns_per_sample for r in runs], ',.0f')} | {med(unwind, '.0f')} | "
            f"{runs[-1].stops if runs else ''} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="recording per depth "
                    "(default 6)")
    ap.add_argument("--depth", type=int, action="append", metavar="N",
                    help="recursion depth (repeatable; default 5, 25, 95: stacks of ~10, "
                    "30 and 100 frames)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting (default 3)")
    ap.add_argument("--recorder", type=Path, default=BIN / "ebpf-record", metavar="PATH")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bpf_cost: run as root (BPF, kernel.bpf_stats_enabled)", file=sys.stderr)
        return 4
    depths = args.depth or [5, 25, 95]
    tmp = Path(tempfile.mkdtemp(prefix="bpf-cost-"))
    try:
        subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures"), f"OUT={tmp}"], check=True)
        runs = []
        with bpf_stats_enabled():
            for rep in range(args.repeats):
                for cg in ("dwarf", "fp"):
                    for depth in [0, *depths]:
                        print(f"bpf_cost: repeat {rep + 1}/{args.repeats} --call-graph {cg}, "
                              f"depth {depth} ...", file=sys.stderr)
                        r = measure(cg, depth, args, tmp, tmp)
                        r.repeat = rep
                        runs.append(r)
        lines = [f"Median (min–max) of {args.repeats} repeats.", "",
                 "| --call-graph | user frames (median) | target samples | on_sample runs "
                 "(all CPUs) | BPF ns per sample | unwind_user run_cnt | stops (last run) |",
                 "|---|---:|---:|---:|---:|---:|---|"]
        for cg in ("dwarf", "fp"):
            filtered = {}
            for r in runs:
                if r.call_graph == cg and r.depth == 0 and r.run_cnt:
                    filtered[r.repeat] = r.run_time_ns / r.run_cnt
                    r.ns_per_sample = filtered[r.repeat]
            lines.append(row(cg, "(filtered: another process or idle)",
                             [r for r in runs if r.call_graph == cg and r.depth == 0]))
            for depth in depths:
                mine = [r for r in runs if r.call_graph == cg and r.depth == depth
                        and r.samples]
                for r in mine:
                    r.ns_per_sample = ns_per_sample(r.run_time_ns, r.run_cnt, r.samples,
                                                    filtered.get(r.repeat, 0.0))
                lines.append(row(cg, f"{statistics.median(r.frames for r in mine):.0f}",
                                 mine))
        load = os.getloadavg()
        lines += ["", f"kernel {os.uname().release}, {os.cpu_count()} CPUs, load average "
                  f"{load[0]:.2f}; on_sample's time includes its unwind_user tail calls "
                  "(bpf_stats counts a tail-called program's time in its caller)."]
        print("\n".join(lines))
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    except BenchError as exc:
        print(f"bpf_cost: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
