"""Round trip through the real chain: record the fixture workload, symbolize, upload to the
receiver, read back, and compare totals and shares with where the workload's time went (by
design alpha 25%, lib_beta 50%, gamma_fn 25% under main -> run_rounds; measured in the run)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.conftest import tool
from tests.helpers.workload_times import FUNCTIONS, assert_shares_as_measured
from tests.receiver import Receiver

pytestmark = pytest.mark.bpf

def parse_folded_total(text: str) -> int:
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.strip() and not line.startswith("#"))


def test_record_symbolize_upload_read_back(fixture_bins, rounds_for, tmp_path, workload_times):
    copy = tmp_path / "symbolized.folded"
    with Receiver() as rx:
        # ~4.5 s of CPU as a fixed amount of work (WORKLOAD_ROUNDS), so a loaded machine does
        # not thin out the samples; at 3 s, a slow day's pace (rounds_for is calibrated once
        # per run) gave 189 samples, under the 200 that shares are judged on
        chain = (f"WORKLOAD_ROUNDS={rounds_for(4.5)} WORKLOAD_TIMES={workload_times.path} "
                 f"{tool('ebpf-record')} --out - -- "
                 f"{fixture_bins}/workload-pie 0"
                 f" | {tool('ebpf-symbolize')} - | tee {copy}"
                 f" | {tool('ebpf-upload')} - --server-address {rx.url}"
                 f" --application-name roundtrip --spool-dir {tmp_path / 'spool'}")
        # own session, so a stuck stage can be killed with the whole pipeline
        p = subprocess.Popen(["bash", "-o", "pipefail", "-c", chain], stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate()
            got = copy.stat().st_size if copy.exists() else 0
            pytest.fail(f"the chain did not end within 120 s for a 4.5 s workload "
                        f"(symbolizer wrote {got} bytes); stderr: {err[-800:]}")
        assert p.returncode == 0, err
        assert "end of input" in err
        assert rx.ingests, "nothing was uploaded"
        for ing in rx.ingests:
            assert ing.app == "roundtrip" and ing.spy_name == "ebpfspy"
            assert ing.sample_rate == 100 and ing.from_s % 10 == 0
            assert ing.until_s - ing.from_s == 10
        # one upload per 10 s window: jittered drain edges must not split a window
        spans = [(i.from_s, i.until_s) for i in rx.ingests]
        assert len(set(spans)) == len(spans), spans
        stacks = rx.stacks(app="roundtrip")
    # nothing lost or added on the way: the server holds what the symbolizer wrote
    assert sum(stacks.values()) == parse_folded_total(copy.read_text())
    ours = {k: v for k, v in stacks.items() if ";run_rounds;" in k}
    total = sum(ours.values())
    assert total > 200, f"only {total} workload samples in ~4.5 s of CPU at 100 Hz"
    got = {fn: sum(v for k, v in ours.items() if f";run_rounds;{fn}" in k) for fn in FUNCTIONS}
    assert_shares_as_measured(got, total, workload_times)
