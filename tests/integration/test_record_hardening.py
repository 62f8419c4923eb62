"""ebpf-record under attack and faults (issue 8): hostile files of local users, disk full,
SIGKILL, secrets in the environment. Needs root and BPF."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from recording.reader import read_table
from tests.conftest import tool

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
needs_setpriv = pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux setpriv")

# A process with anonymous executable memory (what a JIT has) and a FIFO as its perf map.
FIFO_JIT = """
import mmap, os, time
code = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_EXEC)
os.mkfifo(f"/tmp/perf-{os.getpid()}.map")
print("ready", flush=True)
end = time.time() + 60
while time.time() < end:
    pass
"""


def rows(path: Path, record_type: str) -> list[dict]:
    return [r for r in read_table(str(path)).to_pylist() if r["record"] == record_type]


@needs_setpriv
def test_a_fifo_perf_map_of_another_user_does_not_hang_the_recorder(tmp_path):
    jit = subprocess.Popen([*AS_NOBODY, "/usr/bin/python3", "-c", FIFO_JIT],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert jit.stdout is not None and jit.stdout.readline() == "ready\n"
        out = tmp_path / "run.parquet"
        # the old recorder blocked in open() forever: --duration never ended it
        r = subprocess.run([tool("ebpf-record"), "--no-progress", "--out", str(out), "--pid",
                            str(jit.pid), "--duration", "3"], capture_output=True, text=True,
                           timeout=120)
    finally:
        jit.kill()
        jit.wait()
        Path(f"/tmp/perf-{jit.pid}.map").unlink(missing_ok=True)
    assert r.returncode == 0, r.stderr
    assert f"ignored /tmp/perf-{jit.pid}.map of pid {jit.pid}: not a regular file" in r.stderr
    procs = [p for p in rows(out, "process") if p["pid"] == jit.pid]
    assert procs, "the JIT process was not snapshotted, so its perf map was never tried"
    assert any(m["path"] == "" for m in rows(out, "mapping") if m["pid"] == jit.pid)
    assert not [p for p in rows(out, "perfmap") if p["pid"] == jit.pid]
