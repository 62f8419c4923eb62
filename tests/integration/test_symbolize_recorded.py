"""ebpf-record, then ebpf-symbolize: the fixture's known profile from a real recording, live
and after the binaries are stripped and deleted; names equal to addr2line's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_symbolize_fixtures import (
    DESIGN,
    copy_bins,
    differential,
    shares,
    strip_to_debug_tree,
    symbolize,
)

from symbolizer.options import SymbolizeOptions
from tests.conftest import tool

pytestmark = pytest.mark.bpf

# 3 s at 100 Hz is ~300 samples (standard error ~2.5 points per share). Observed: `perf record
# -F 100` of this workload lands within 3 points of the design, while ebpf-record's fixed
# 10 ms cpu-clock period swings alpha/gamma between 18% and 30% from run to run (the raw leaf
# addresses split the same way, see test below), so the design check allows 10 points and the
# exact check is against the recording's own raw addresses.
TOLERANCE = 0.10


def record(exe: Path, out: Path) -> Path:
    subprocess.run([tool("ebpf-record"), "--out", str(out), "--", str(exe), "3"], check=True,
                   timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return out


@pytest.mark.timeout(240)
@pytest.mark.parametrize("exe", ["workload-pie", "workload-nopie"])
def test_recorded_shares_live_then_stripped(exe, fixture_bins, tmp_path, capsys):
    bins = copy_bins(fixture_bins, tmp_path / "bins")
    rec = record(bins / exe, tmp_path / "run.parquet")
    rc, out, _ = symbolize(capsys, rec, "--cache-dir", tmp_path / "c1")
    assert rc == 0
    got = shares(out)
    assert {k: got.get(k, 0) for k in DESIGN} == pytest.approx(DESIGN, abs=TOLERANCE), got

    assert leaf_objects_raw(rec) == leaf_objects_symbolized(out), "frames in wrong objects"

    compared, diffs = differential(rec, SymbolizeOptions(cache_dir=str(tmp_path / "c1")))
    assert compared >= 5 and diffs == []

    strip_to_debug_tree([bins / exe, bins / "libfixture.so"], tmp_path / "debug")
    rc, out2, _ = symbolize(capsys, rec, "--debug-dir", tmp_path / "debug", "--cache-dir",
                            tmp_path / "c2")
    assert rc == 0 and shares(out2) == pytest.approx(got, abs=1e-9)


def leaf_objects_raw(rec: Path) -> dict[str, int]:
    """Samples per object of the leaf address, from the recording's mappings alone."""
    import pyarrow.parquet as pq

    rows = pq.read_table(rec).to_pylist()
    maps = [r for r in rows if r["record"] == "mapping"]
    out: dict[str, int] = {}
    for r in rows:
        if r["record"] == "sample" and r["user_stack"] and not r["kernel_stack"]:
            ip = r["user_stack"][0]
            m = next((m for m in maps if m["start"] <= ip < m["end"]), None)
            if m and m["path"].endswith(("workload-pie", "workload-nopie", "libfixture.so")):
                key = "libfixture.so" if m["path"].endswith(".so") else "exe"
                out[key] = out.get(key, 0) + r["count"]
    return out


def leaf_objects_symbolized(folded: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in folded.splitlines():
        if line.startswith("#"):
            continue
        stack, n = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1]
        key = {"lib_beta": "libfixture.so", "alpha": "exe", "gamma_fn": "exe",
               "run_rounds": "exe", "main": "exe", "now": "exe"}.get(leaf)
        if key is None and leaf.startswith(("workload-pie+0x", "workload-nopie+0x")):
            key = "exe"  # a PLT stub (no symbol covers it): unresolved, but in the exe
        elif key is None and leaf.startswith("libfixture.so+0x"):
            key = "libfixture.so"
        if key:
            out[key] = out.get(key, 0) + int(n)
    return out
