"""Ctrl-C on the whole chain (SIGINT to every process of the pipeline at once) must not lose
the recorder's last window: every sample the recorder counted reaches the server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests.conftest import tool
from tests.receiver.server import Receiver

pytestmark = [pytest.mark.bpf, pytest.mark.slow]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_whole_chain_delivers_every_sample(fixture_bins, signum):
    with Receiver() as rx:
        chain = (f"{tool('ebpf-record')} --no-progress --out - -- "
                 f"{fixture_bins / 'workload-pie'} 60 | {tool('ebpf-symbolize')} - | "
                 f"{tool('ebpf-upload')} - --server-address {rx.url} "
                 "--application-name chain.signal")
        p = subprocess.Popen(["bash", "-c", "set -o pipefail; " + chain],
                             start_new_session=True, stderr=subprocess.PIPE, text=True)
        assert p.stderr is not None
        for line in p.stderr:  # wait until the recorder samples, then two more seconds
            if "ebpf-record: sampling" in line:
                break
        time.sleep(2.5)
        os.killpg(p.pid, signum)
        _, err = p.communicate(timeout=60)
        recorded = int(re.search(r"ebpf-record: ([\d,]+) samples", err).group(1)
                       .replace(",", ""))
        assert recorded > 50, err
        assert sum(rx.stacks().values()) == recorded, err
        assert "Traceback" not in err
