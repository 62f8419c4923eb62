#!/usr/bin/env python3
"""Unwind table build cost per object, side by side with GNU readelf on the same files.

For each object: its CFI bytes (.eh_frame + .debug_frame), the table's rows and bytes, and
the median over --repeat runs of
- cold: `TableCache(empty dir).table_for(path)`: ELF headers, decode, layout, cache write;
- warm: `TableCache(that dir).table_for(path)`: ELF headers (for the build ID), cache read;
- readelf: `readelf --debug-dump=frames-interp` to /dev/null (the reference tool, which
  interprets the same CFI into rows, in C);
- pyelftools: the same table through pyelftools' CFI decoder (unwind/pyelf.py), one run.
Ratios are against cold. Nothing is asserted: these are figures to read.

    .venv/bin/python benchmarks/unwind_tables.py [--repeat 5] [OBJECT ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unwind import pyelf  # noqa: E402
from unwind.build import BuildStats, build_table, object_info  # noqa: E402
from unwind.cache import TableCache  # noqa: E402
from unwind.table import UnwindTable  # noqa: E402

DEFAULT = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2",
           "/usr/bin/python3.11", "/lib/x86_64-linux-gnu/liblzma.so.5", "/usr/bin/sort"]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(path: str, repeat: int, with_pyelftools: bool) -> dict:
    fd = os.open(path, os.O_RDONLY)
    try:
        info = object_info(fd)
        stats = BuildStats()
        table = build_table(fd, info, stats=stats)
        py = timed(lambda: build_table(fd, info, decoder=pyelf.decode)) if with_pyelftools \
            else None
    finally:
        os.close(fd)
    if not isinstance(table, UnwindTable):
        raise SystemExit(f"{path}: {table}")
    cold, warm, ref = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            cold.append(timed(lambda d=d: TableCache(d).table_for(path)))
            c = TableCache(d)
            warm.append(timed(lambda c=c: c.table_for(path)))
            assert c.stats.disk_hits == 1, "warm run did not hit the cache"
        ref.append(timed(lambda: subprocess.run(
            ["readelf", "--debug-dump=frames-interp", path], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)))
    return {"name": os.path.basename(path), "cfi": stats.cfi_bytes, "rows": table.count,
            "bytes": len(table.rows), "cold": statistics.median(cold),
            "warm": statistics.median(warm), "readelf": statistics.median(ref), "pyelf": py,
            "unsupported": table.rule_counts()["unsupported"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("objects", nargs="*", default=DEFAULT)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-pyelftools", action="store_true", help="skip the slow decoder")
    a = p.parse_args()
    results = [measure(os.path.realpath(o), a.repeat, not a.no_pyelftools)
               for o in a.objects if os.path.exists(o)]
    print(f"median of {a.repeat} runs; s/MB is per MB of CFI (.eh_frame + .debug_frame)")
    head = (f"{'object':<24}{'CFI KB':>8}{'rows':>8}{'table KB':>9}{'unsup':>6}"
            f"{'cold ms':>9}{'s/MB':>6}{'warm ms':>9}{'readelf ms':>11}{'x cold':>7}"
            f"{'pyelftools ms':>14}{'x cold':>7}")
    print(head)
    for r in results:
        mb = r["cfi"] / 1e6
        py = (f"{r['pyelf'] * 1e3:>14.0f}{r['pyelf'] / r['cold']:>6.1f}x" if r["pyelf"]
              else f"{'-':>14}{'-':>7}")
        print(f"{r['name']:<24}{r['cfi'] / 1024:>8.0f}{r['rows']:>8}{r['bytes'] / 1024:>9.0f}"
              f"{r['unsupported']:>6}{r['cold'] * 1e3:>9.1f}{r['cold'] / mb:>6.2f}"
              f"{r['warm'] * 1e3:>9.1f}{r['readelf'] * 1e3:>11.1f}"
              f"{r['readelf'] / r['cold']:>6.1f}x{py}")
    total_cfi = sum(r["cfi"] for r in results) / 1e6
    total_cold = sum(r["cold"] for r in results)
    print(f"all: {total_cfi:.2f} MB of CFI, cold {total_cold * 1e3:.0f} ms "
          f"({total_cold / total_cfi:.2f} s/MB), warm {sum(r['warm'] for r in results) * 1e3:.1f}"
          f" ms, readelf {sum(r['readelf'] for r in results) * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
