"""Round trip through the real chain: record the fixture workload, symbolize, upload to the
receiver, read back, and compare totals and shares with the workload's design
(alpha 25%, lib_beta 50%, gamma_fn 25% under main -> run_rounds)."""

from __future__ import annotations

import subprocess

import pytest
from conftest import tool
from receiver import Receiver

pytestmark = pytest.mark.bpf

EXPECTED = {"alpha": 0.25, "lib_beta": 0.50, "gamma_fn": 0.25}


def parse_folded_total(text: str) -> int:
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.strip() and not line.startswith("#"))


def test_record_symbolize_upload_read_back(fixture_bins, tmp_path):
    copy = tmp_path / "symbolized.folded"
    with Receiver() as rx:
        chain = (f"{tool('ebpf-record')} --out - -- {fixture_bins}/workload-pie 3"
                 f" | {tool('ebpf-symbolize')} - | tee {copy}"
                 f" | {tool('ebpf-upload')} - --server-address {rx.url}"
                 f" --application-name roundtrip --spool-dir {tmp_path / 'spool'}")
        p = subprocess.run(["bash", "-o", "pipefail", "-c", chain], capture_output=True,
                           text=True, timeout=180)
        assert p.returncode == 0, p.stderr
        assert "end of input" in p.stderr
        assert rx.ingests, "nothing was uploaded"
        for ing in rx.ingests:
            assert ing.app == "roundtrip" and ing.spy_name == "ebpfspy"
            assert ing.sample_rate == 100 and ing.from_s % 10 == 0
            assert ing.until_s - ing.from_s == 10
        stacks = rx.stacks(app="roundtrip")
    # nothing lost or added on the way: the server holds what the symbolizer wrote
    assert sum(stacks.values()) == parse_folded_total(copy.read_text())
    ours = {k: v for k, v in stacks.items() if ";run_rounds;" in k}
    total = sum(ours.values())
    assert total > 150, f"only {total} workload samples in ~3 s at 100 Hz"
    for fn, share in EXPECTED.items():
        got = sum(v for k, v in ours.items() if f";run_rounds;{fn}" in k) / total
        assert abs(got - share) < 0.08, f"{fn}: {got:.1%} (expected ~{share:.0%})"
