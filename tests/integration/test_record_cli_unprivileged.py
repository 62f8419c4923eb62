"""ebpf-record run as an unprivileged user (root drops to nobody with setpriv)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import tool


@pytest.mark.root  # to drop to an unprivileged user with setpriv (util-linux)
def test_without_root_it_says_what_is_missing(tmp_path):
    out = f"/tmp/ebpf-record-nobody-{os.getpid()}.parquet"
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*as_nobody, tool("ebpf-record"), "--help"], capture_output=True,
                           timeout=30, cwd="/tmp")
    if probe.returncode != 0:
        pytest.skip("the unprivileged user cannot run this checkout's .venv (its directory "
                    "is not reachable for other users)")
    r = subprocess.run([*as_nobody, tool("ebpf-record"), "--out", out, "--duration", "1"],
                       capture_output=True, text=True, timeout=30, cwd="/tmp")
    assert r.returncode == 4
    assert r.stderr.strip() == ("ebpf-record: error: ebpf-record needs root for BPF and perf "
                                "events; run it with sudo")
    assert not os.path.exists(out)
