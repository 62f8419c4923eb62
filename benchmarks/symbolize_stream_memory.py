#!/usr/bin/env python3
"""Peak memory of `ebpf-symbolize -` on long streams: a recorded stream replayed N times back
to back, each copy with times shifted past the previous one and pids shifted so that every
copy's processes are new (the worst case: a fleet of short-lived processes).

    sudo .venv/bin/ebpf-record --out - --duration 120 > stream.arrow   # with some activity
    .venv/bin/python benchmarks/symbolize_stream_memory.py stream.arrow --copies 1 5 10
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
PID_SHIFT = 200_000


def replay(src: Path, copies: int, out: Path) -> None:
    reader = pa.ipc.open_stream(src.open("rb"))
    batches, schema = list(reader), reader.schema
    ends = [pc.max(b.column("window_end_ns")).as_py() for b in batches]
    starts = [pc.min(b.column("window_start_ns")).as_py() for b in batches]
    span = max(e for e in ends if e) - min(s for s in starts if s) + 10**9
    with pa.ipc.new_stream(out.open("wb"), schema) as w:
        for k in range(copies):
            for i, b in enumerate(batches):
                if k and i == 0:
                    continue  # meta, objects and kernel symbols come once per recording
                cols = [pc.add(b.column(n), pa.scalar(k * span, b.schema.field(n).type))
                        if n in ("time_ns", "window_start_ns", "window_end_ns") else
                        pc.add(b.column(n), pa.scalar(k * PID_SHIFT, pa.int32()))
                        if n == "pid" else b.column(n) for n in schema.names]
                w.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stream", type=Path)
    ap.add_argument("--copies", type=int, nargs="+", default=[1, 5, 10])
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="streammem-"))
    cache = work / "cache"
    print(f"{'copies':>6}{'peak RSS (MiB)':>16}")
    for n in a.copies:
        path = work / f"x{n}.arrow"
        replay(a.stream, n, path)
        with path.open("rb") as f:
            r = subprocess.run(["/usr/bin/time", "-f", "%M", str(ROOT / ".venv/bin/ebpf-symbolize"),
                                "-", "--cache-dir", str(cache)], stdin=f,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        print(f"{n:>6}{int(r.stderr.strip().splitlines()[-1]) / 1024:>16.1f}")
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
