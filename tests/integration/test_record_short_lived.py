"""Processes that live a few ms: their first samples come before the kernel has their mapping
list, so the BPF program copies their user stacks and the recorder unwinds the copies
(recorder/stack_copies.py); processes gone before /proc is read keep their mappings from the
kernel's mmap records (recorder/mmap_events.py). Needs root and BPF."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import pytest

from recording.reader import read_table
from tests.conftest import tool

pytestmark = [pytest.mark.bpf, pytest.mark.slow]


def _samples(path) -> list[dict]:
    return [r for r in read_table(str(path)).to_pylist() if r["record"] == "sample"]


def test_short_lived_processes_without_frame_pointers_unwind_fully(fixture_bins, rounds_for,
                                                                 tmp_path):
    out = tmp_path / "run.parquet"
    # 30 processes of ~40 ms of CPU each, built without frame pointers: without the copies
    # their first samples would be a single frame
    script = (f"for i in $(seq 30); do WORKLOAD_ROUNDS={rounds_for(0.04)} "
              f"{fixture_bins}/workload-nofp 0; "
              "done")
    r = subprocess.run([tool("ebpf-record"), "--no-progress", "--out", str(out), "--",
                        "bash", "-c", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ})
    assert r.returncode == 0, r.stderr
    work = [s for s in _samples(out) if s["comm"] == "workload-nofp"]
    total = sum(s["count"] for s in work)
    assert total >= 30, r.stderr
    stops = Counter()
    for s in work:
        stops[s["user_stop"]] += s["count"]
    assert stops["entry"] >= 0.9 * total, stops
    copied = sum(s["count"] for s in work if (s["user_unwinder"] or "").endswith("+copy"))
    assert copied > 0, "no sample needed a copy: the test no longer covers the first samples"
    # the copies are what makes the first samples whole: next to none of them is a lone leaf
    # that stopped short (ld.so's _start -> _dl_start is two frames that do reach the entry;
    # a sample inside execve has its parent's stack, unwound with the child's tables)
    lone = [s for s in work if (s["user_unwinder"] or "").endswith("+copy")
            and len(s["user_stack"]) < 3 and s["user_stop"] != "entry"]
    assert sum(s["count"] for s in lone) <= max(1, 0.03 * copied), (copied, [
        (s["pid"], s["count"], s["user_unwinder"], s["user_stop"],
         [hex(a) for a in s["user_stack"]], len(s["kernel_stack"] or [])) for s in lone])
