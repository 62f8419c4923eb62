"""A real process that names itself `#...` with prctl(PR_SET_NAME) is recorded, symbolized and
uploaded like any other (issue 8, item 12): its folded lines are not read back as comments."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import tool
from tests.receiver import Receiver

pytestmark = pytest.mark.bpf

COMM = "#hidden-comm"
WORKLOAD = f"""
import ctypes, time
ctypes.CDLL(None).prctl(15, {COMM.encode()!r}, 0, 0, 0)  # PR_SET_NAME
end = time.time() + 1.5
while time.time() < end:
    pass
"""


@pytest.mark.timeout(180)
def test_process_named_hash_is_uploaded(tmp_path):
    rec, folded = tmp_path / "run.parquet", tmp_path / "run.folded"
    subprocess.run([tool("ebpf-record"), "--out", str(rec), "--", sys.executable, "-c",
                    WORKLOAD], check=True, timeout=120, capture_output=True)
    with open(folded, "wb") as out:
        subprocess.run([tool("ebpf-symbolize"), str(rec)], check=True, timeout=120,
                       stdout=out, stderr=subprocess.PIPE)
    text = folded.read_text()
    written = sum(int(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                  if ln.startswith("\\" + COMM + ";"))
    assert written > 50, text[:500]  # ~150 samples at 100 Hz; a pass needs the comm seen
    with Receiver() as rx:
        r = subprocess.run([tool("ebpf-upload"), str(folded), "--application-name", "hash",
                            "--server-address", rx.url, "--spool-dir", str(tmp_path / "sp")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        got = {k: v for k, v in rx.stacks().items() if k.startswith(COMM + ";")}
    assert sum(got.values()) == written
