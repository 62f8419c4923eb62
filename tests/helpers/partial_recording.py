"""Recordings written window by window, and what a partial one holds (no tests here)."""

from __future__ import annotations

from pathlib import Path

from recording.reader import read_table

META = [{"record": "meta", "key": "schema_version", "value": "1"}]


def window(i: int, samples: int = 3) -> list[dict]:
    start, end = i * 1_000_000_000, (i + 1) * 1_000_000_000
    rows = [{"record": "sample", "window_start_ns": start, "window_end_ns": end, "pid": 100 + j,
             "comm": "w", "count": 1, "user_stack": [0x400000 + i, 0x401000 + j]}
            for j in range(samples)]
    rows.append({"record": "window", "window_start_ns": start, "window_end_ns": end,
                 "count": samples})
    return rows


def windows_of(path: Path | str) -> list[int]:
    return [r["window_start_ns"] // 1_000_000_000
            for r in read_table(str(path)).to_pylist() if r["record"] == "window"]


def partials(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".partial"))
