#!/usr/bin/env python3
"""Soak: ebpf-record system-wide for minutes on a workload that keeps making new stacks.

Two `manystacks` processes (fixtures/src/manystacks.c: 4096 distinct 12-level call chains,
each round the next) run while the recorder samples the whole system at --rate Hz. Every
--every seconds the recorder's RSS (VmRSS) is read; at the end its summary and the recording's
stats say what was lost. Issue 9 measured 24% of samples lost after 150 s with bcc's stack map,
and loss growing window by window; the target is zero loss and flat memory.

    sudo .venv/bin/python benchmarks/soak.py --minutes 10
    sudo .venv/bin/python benchmarks/soak.py --minutes 1 --stack-storage-size 1024   # small map

Not a test: it reports. It needs root and BPF, and a quiet machine for the memory figures.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recording.reader import read_table  # noqa: E402


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_breakdown(pid: int) -> dict[str, int]:
    """Resident KiB by kind of mapping (/proc/PID/smaps): what a target like 150 MiB is
    spent on. anon: malloc arenas and large blocks, Python's object arenas, Arrow's pool."""
    kinds: dict[str, int] = {}
    kind = "anon"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and not head[0].endswith(":"):
                    name = head[5] if len(head) > 5 else ""
                    kind = ("anon" if name in ("", "[heap]", "[stack]") else
                            "libLLVM/libclang" if "libLLVM" in name or "libclang" in name else
                            "BPF maps (mmapped)" if "bpf-map" in name else
                            "libarrow/libparquet" if "libarrow" in name or "libparquet" in name
                            else "other files" if name.startswith("/") else "other")
                elif head[0] == "Rss:":
                    kinds[kind] = kinds.get(kind, 0) + int(head[1])
    except OSError:
        pass
    return kinds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=199)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--stack-storage-size", type=int, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bins = Path(tmp) / "bin"
        subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures"), f"OUT={bins}"], check=True)
        seconds = a.minutes * 60
        out = Path(tmp) / "soak.parquet"
        args = [str(ROOT / ".venv/bin/ebpf-record"), "--no-progress", "--out", str(out),
                "--sample-rate", str(a.rate), "--duration", f"{seconds + 5:g}"]
        if a.stack_storage_size:
            args += ["--stack-storage-size", str(a.stack_storage_size)]
        rec = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        assert rec.stderr is not None
        for line in rec.stderr:
            if "sampling" in line:
                break
        work = [subprocess.Popen([str(bins / "manystacks"), f"{seconds:g}"]) for _ in range(2)]
        t0 = time.monotonic()
        series: list[tuple[float, int]] = []
        breakdown: dict[str, int] = {}
        while rec.poll() is None and time.monotonic() - t0 < seconds + 10:
            got = rss_kib(rec.pid)
            if got is not None:
                series.append((time.monotonic() - t0, got))
                if time.monotonic() - t0 < seconds:
                    breakdown = rss_breakdown(rec.pid) or breakdown  # the last while sampling
            time.sleep(a.every)
        for w in work:
            w.wait()
        rest = rec.stderr.read()
        rec.wait()
        table = read_table(str(out)).to_pylist()
    stats = {r["key"]: r["value"] for r in table if r["record"] == "stats"}
    windows = [r for r in table if r["record"] == "window"]
    samples = [r for r in table if r["record"] == "sample"]
    lost_rows = sum(r["count"] for r in samples
                    if r["user_stack_error"] in (-12, -2, -17) or r["kernel_stack_error"]
                    in (-12, -2, -17))
    work_samples = sum(r["count"] for r in samples if r["comm"] == "manystacks")
    distinct = len({tuple(r["user_stack"] or ()) for r in samples if r["comm"] == "manystacks"})
    print(f"soak: {a.minutes:g} min at {a.rate} Hz, {len(windows)} windows, "
          f"{int(stats.get('samples', 0)):,} samples ({work_samples:,} of manystacks, "
          f"{distinct:,} distinct user stacks)")
    print(f"  lost: stack map full {stats.get('lost_user_stacks')} user / "
          f"{stats.get('lost_kernel_stacks')} kernel, count map full "
          f"{stats.get('dropped_samples_counts_full')}, window lost_samples "
          f"{sum(w.get('lost_samples') or 0 for w in windows)}, sample rows with a lost "
          f"stack {lost_rows}")
    if series:
        first = [v for t, v in series if t <= 60] or [series[0][1]]
        last = [v for t, v in series if t >= series[-1][0] - 60]
        print(f"  recorder RSS, MiB: first minute max {max(first) / 1024:.1f}, last minute max "
              f"{max(last) / 1024:.1f}, overall max {max(v for _, v in series) / 1024:.1f}")
        step = max(1, len(series) // 12)
        print("  RSS series (s, MiB): " + ", ".join(f"{t:.0f}:{v / 1024:.0f}"
                                                   for t, v in series[::step]))
    if breakdown:
        print("  recorder RSS at the last reading, MiB: " + ", ".join(
            f"{k} {v / 1024:.1f}" for k, v in sorted(breakdown.items(), key=lambda kv: -kv[1])))
    m = re.search(r"recorder CPU .*", rest)
    if m:
        print(f"  {m.group(0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
