"""Cost of writing a recording as a partial Arrow stream and converting it at close, against
writing Parquet directly (what ebpf-record did before the partial stream).

Replays the rows of a real recording window by window through both writers, each in its own
process, and reports the time spent per window, the time at close, how much the peak RSS grew
while writing and at close (over the process holding the replayed rows), the largest size on
disk during the run and the final size.

    .venv/bin/python benchmarks/partial_stream_cost.py run.parquet [--repeat 3] [--scale K]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def windows(path: str, scale: int = 1) -> list[list[dict]]:
    """The recording's rows cut where its window rows are, as the recorder wrote them; with
    `scale` K, each sample row K times with other addresses (a host with K times the CPUs)."""
    from recording.reader import read_table

    out: list[list[dict]] = [[]]
    for row in read_table(path).to_pylist():
        row = {k: v for k, v in row.items() if v is not None}
        if row["record"] == "stats":
            continue
        if row["record"] == "sample":
            for k in range(1, scale):
                out[-1].append({**row, "user_stack": [a ^ (k << 12) for a in
                                                      row.get("user_stack", [])]})
        out[-1].append(row)
        if row["record"] == "window":
            out.append([])
    return [w for w in out if w]


class DirectParquet:
    """The former writer: rows buffered, a row group written every 50,000 rows."""

    def __init__(self, path: str) -> None:
        import pyarrow.parquet as pq

        from recording.schema import SCHEMA

        self.path = path
        self._writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        self._rows: list[dict] = []

    def write_rows(self, rows: list[dict]) -> None:
        from recording.schema import rows_to_batch

        self._rows.extend(rows)
        if len(self._rows) >= 50_000:
            self._writer.write_batch(rows_to_batch(self._rows))
            self._rows = []

    def end_window(self) -> None:
        pass

    def close(self) -> None:
        from recording.schema import rows_to_batch

        if self._rows:
            self._writer.write_batch(rows_to_batch(self._rows))
        self._writer.close()


def disk_bytes(directory: str) -> int:
    return sum(p.stat().st_size for p in Path(directory).iterdir())


def run_one(scheme: str, recording: str, scale: int) -> dict:
    from recording.writer import FileRecordingWriter

    ws = windows(recording, scale)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(recording))) as d:
        out = os.path.join(d, "run.parquet")
        writer = FileRecordingWriter(out) if scheme == "stream" else DirectParquet(out)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        per_window = []
        peak_disk = 0
        for window_rows in ws:
            rows = [dict(r) for r in window_rows]  # fresh rows, as each drain makes them
            t = time.perf_counter()
            writer.write_rows(rows)
            writer.end_window()
            per_window.append(time.perf_counter() - t)
            del rows
            peak_disk = max(peak_disk, disk_bytes(d))
        rss_run = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        writer.close()
        close_s = time.perf_counter() - t
        rss_close = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "windows": len(ws), "rows": sum(len(w) for w in ws),
            "window_ms_mean": 1000 * sum(per_window) / len(per_window),
            "window_ms_max": 1000 * max(per_window), "close_s": close_s,
            "rss_kb_before": rss_before, "rss_kb_run": rss_run, "rss_kb_close": rss_close,
            "peak_disk": peak_disk, "final": os.path.getsize(out),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recording")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=int, default=1, help="each sample row this many times")
    ap.add_argument("--one", choices=("stream", "direct"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.recording, a.scale)))
        return
    results: dict[str, list[dict]] = {"direct": [], "stream": []}
    for _ in range(a.repeat):
        for scheme in results:  # alternated, so load changes hit both
            r = subprocess.run([sys.executable, __file__, a.recording, "--one", scheme,
                                "--scale", str(a.scale)],
                               capture_output=True, text=True, check=True)
            results[scheme].append(json.loads(r.stdout))
    for scheme, runs in results.items():
        best = min(runs, key=lambda r: r["close_s"])
        print(f"{scheme:6}: {best['windows']} windows, {best['rows']:,} rows; per window "
              f"{min(r['window_ms_mean'] for r in runs):.2f} ms mean, "
              f"{min(r['window_ms_max'] for r in runs):.1f} ms max; close "
              f"{min(r['close_s'] for r in runs):.3f} s; peak RSS +"
              f"{(best['rss_kb_run'] - best['rss_kb_before']) / 1024:.1f} MiB while writing, +"
              f"{(best['rss_kb_close'] - best['rss_kb_run']) / 1024:.1f} MiB at close; on disk "
              "at most "
              f"{best['peak_disk']:,} bytes, final {best['final']:,} bytes")


if __name__ == "__main__":
    main()
