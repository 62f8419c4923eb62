"""The pprof ebpf-symbolize writes, as `go tool pprof -raw` prints it, against a golden file:
samples, locations with addresses, mappings with build IDs (UPDATE_GOLDEN=1 rewrites it)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest

from symbolizer.sinks.pprof import write
from tests.helpers.golden import check_golden
from tests.helpers.sinks import synthetic_profiles


def test_go_tool_pprof_raw_of_the_synthetic_profiles(tmp_path):
    go = shutil.which("go")
    if go is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("go (Debian golang-go) is missing; scripts/setup.sh installs it")
        pytest.skip("go (Debian golang-go) is not installed")
    out = io.BytesIO()
    write(synthetic_profiles(), out)
    path = tmp_path / "p.pb.gz"
    path.write_bytes(out.getvalue())
    env = {**os.environ, "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "gocache"),
           "GOPATH": str(tmp_path / "gopath"), "GOTOOLCHAIN": "local", "GOPROXY": "off",
           "TZ": "UTC"}
    res = subprocess.run([go, "tool", "pprof", "-symbolize=none", "-raw", str(path)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    check_golden("synthetic.pprof-raw.txt", res.stdout)
