"""Every command reports a bad flag as one line naming it, exit 2, no usage dump."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import tool


@pytest.mark.parametrize(("command", "args"), [
    ("ebpf-record", ["--out", "/tmp/never-written.parquet"]),
    ("ebpf-symbolize", ["run.parquet"]),
    ("ebpf-upload", ["-"]),
])
def test_unknown_flag_is_one_line(command, args):
    r = subprocess.run([tool(command), *args, "--no-such-flag"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{command}: error:") and "--no-such-flag" in lines[0]
    assert f"see `{command} --help`" in lines[0]


@pytest.mark.parametrize("command", ["ebpf-record", "ebpf-symbolize", "ebpf-upload"])
def test_help_works(command):
    r = subprocess.run([tool(command), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(f"usage: {command}")
