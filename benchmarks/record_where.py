#!/usr/bin/env python3
"""Where ebpf-record's own CPU goes: a system-wide recording run in this process, with the
thread CPU time (time.thread_time, so waits and the other thread do not count) of each main
step added up, optionally while new processes start (bench_load.start_churn).

Timers nest (a snapshot includes its /proc read), and each costs ~1 us, so the figures are
a breakdown, not a total; record_vs_perf.py measures the total side by side with perf.

    sudo .venv/bin/python benchmarks/record_where.py --seconds 30 --churn 10
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bench_load import start_churn, stop_churn  # benchmarks/ is sys.path[0]

import recorder.bpf_program as bpf_program
import recorder.python.frames as py_frames
import recorder.python.tracker as py_tracker
import recorder.session as session
import recorder.snapshots as snapshots
import recorder.stack_copies as stack_copies
import recorder.unwinder as unwinder
import recording.writer as writer
from recorder.cli import main as record_main

# (owner, attribute, label): the steps of the main loop and of the table loader
STEPS: list[tuple[Any, str, str]] = [
    (snapshots.ProcessTracker, "observe", "snapshots (ProcessTracker.observe)"),
    (snapshots.procfs, "snapshot", "  of which /proc reads (procfs.snapshot)"),
    (py_frames.PythonFrames, "on_snapshot", "  of which the Python check (on_snapshot)"),
    (unwinder.KernelTables, "_load_process", "loader: a snapshot's mapping list to BPF"),
    (unwinder.KernelTables, "_load", "  of which unwind tables read or built"),
    (bpf_program.ProfileProgram, "poll_events", "BPF events and stack copies (poll)"),
    (session.Recorder, "_on_pycodes", "  of which code objects a young process met first"),
    (session.Recorder, "_on_copy", "  of which stack copies taken (their code objects read)"),
    (py_tracker, "read_code_objects", "code objects read (all of the above and the drains)"),
    (stack_copies.CopyUnwinder, "drain", "stack copies unwound in user space"),
    (py_frames.PythonFrames, "rows", "Python code objects read at each drain"),
    (session.MmapTracker, "poll", "the kernel's mmap records"),
    (bpf_program.ProfileProgram, "drain", "count and stack maps drained"),
    (session.Recorder, "_window_rows", "a window's sample rows"),
    (writer.FileRecordingWriter, "end_window", "the window written (Arrow batch, fdatasync)"),
    (writer, "rows_to_batch", "  of which rows to an Arrow batch"),
]


def timed(fn: Callable[..., Any], into: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            into[0] += 1
            into[1] += time.thread_time() - t0
    return wrapper


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--churn", type=float, default=10.0, metavar="PER_SECOND")
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--warmup", type=float, default=5.0,
                    help="seconds not counted: the start-up snapshot of every process")
    args = ap.parse_args()
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for owner, attr, label in STEPS:
        setattr(owner, attr, timed(getattr(owner, attr), totals[label]))
    at_warmup: dict[str, list[float]] = {}
    timer = threading.Timer(args.warmup, lambda: at_warmup.update(
        {k: list(v) for k, v in totals.items()}))
    churn = start_churn(args.churn)
    timer.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rc = record_main(["--out", os.path.join(tmp, "run.parquet"), "--sample-rate",
                              str(args.rate), "--duration", str(args.seconds), "--no-progress"])
    finally:
        stop_churn(churn)
    counted = args.seconds - args.warmup
    print(f"\nrecord_where: {counted:g} s (after {args.warmup:g} s of start-up) at {args.rate} "
          f"Hz, {args.churn:g} new Python processes a second; thread CPU per step\n")
    print("| step | calls | CPU, ms | per call, us |\n|---|---:|---:|---:|")
    for _owner, _attr, label in STEPS:
        n, cpu = (a - b for a, b in zip(totals[label], at_warmup.get(label, [0.0, 0.0]),
                                        strict=True))
        per = cpu / n * 1e6 if n else 0.0
        print(f"| {label} | {int(n):,} | {cpu * 1000:,.0f} | {per:,.0f} |")
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
