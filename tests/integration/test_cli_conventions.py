"""Issue 13's conventions, on the real commands with BPF: ebpf-record reads its PYROSCOPE_*
twins and perf's short flags; folded `_[k]` annotations on a recording with kernel frames;
`make demo` into an absolute DEMO_OUT."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from recording.reader import read_table
from tests.conftest import ROOT, tool

pytestmark = [pytest.mark.bpf, pytest.mark.slow]


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PYROSCOPE_")}
    e.update(extra)
    return e


def meta(path: Path) -> dict[str, str]:
    t = read_table(str(path))
    return {r["key"]: r["value"] for r in t.to_pylist() if r["record"] == "meta"}


def test_record_twins_and_short_flags_reach_the_recording(tmp_path):
    # GIVEN the rate in the environment, as the agent's users set it, and perf's flags
    out = tmp_path / "k.parquet"
    # a workload that spends its time in the kernel (read/write of 64 KiB blocks)
    cmd = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64k", "count=400000"]
    r = subprocess.run([tool("ebpf-record"), "--no-progress", "-o", str(out), "-g", "--", *cmd],
                       env=env(PYROSCOPE_SAMPLE_RATE="49", PYROSCOPE_RECORD_CALL_GRAPH="fp"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = meta(out)
    # THEN the recording says 49 Hz (it said 100 before) and the fp unwinder
    assert m["sample_rate_hz"] == "49"
    assert json.loads(m["target"])["mode"] == "command"
    stats = {row["key"]: row["value"] for row in read_table(str(out)).to_pylist()
             if row["record"] == "stats"}
    assert stats["call_graph"] == "fp"

    # AND --annotations marks exactly the kernel frames: the leaf-side run of each stack
    s = subprocess.run([tool("ebpf-symbolize"), str(out), "--annotations", "--no-headers",
                        "-q", "--cache-dir", str(tmp_path / "c")],
                       env=env(), capture_output=True, text=True, timeout=120)
    assert s.returncode == 0, s.stderr
    lines = s.stdout.splitlines()
    assert lines and not any(ln.startswith("#") for ln in lines)
    annotated = 0
    for line in lines:
        frames = line.rsplit(" ", 1)[0].split(";")
        kernel = [f.endswith("_[k]") for f in frames]
        if any(kernel):
            annotated += int(line.rsplit(" ", 1)[1])
            first = kernel.index(True)
            assert all(kernel[first:]), line  # no user frame below a kernel one
            assert not frames[0].endswith("_[k]")  # the comm root is not a kernel frame
    total = sum(int(ln.rsplit(" ", 1)[1]) for ln in lines)
    assert annotated > total // 4, (annotated, total)  # dd lives in read(2)/write(2)
    plain = subprocess.run([tool("ebpf-symbolize"), str(out), "--no-headers", "-q",
                            "--cache-dir", str(tmp_path / "c")],
                           env=env(), capture_output=True, text=True, timeout=120).stdout
    assert "_[k]" not in plain
    assert sorted(ln.replace("_[k]", "") for ln in lines) == sorted(plain.splitlines())


def test_demo_writes_to_an_absolute_demo_out(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=env(DEMO_OUT=str(out)))
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("run.parquet", "run.folded", "flamegraph.html", "bin/workload-pie"):
        assert (out / name).is_file(), name
    assert "top functions" in r.stdout and str(out) in r.stdout
