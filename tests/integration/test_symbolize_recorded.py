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

# 3 s at 100 Hz is ~300 samples: one share's standard error is ~2.5 points, so allow 6.
TOLERANCE = 0.06


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

    compared, diffs = differential(rec, SymbolizeOptions(cache_dir=str(tmp_path / "c1")))
    assert compared >= 5 and diffs == []

    strip_to_debug_tree([bins / exe, bins / "libfixture.so"], tmp_path / "debug")
    rc, out2, _ = symbolize(capsys, rec, "--debug-dir", tmp_path / "debug", "--cache-dir",
                            tmp_path / "c2")
    assert rc == 0 and shares(out2) == pytest.approx(got, abs=1e-9)
