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


@pytest.mark.parametrize(("command", "args", "abbrev"), [
    ("ebpf-record", ["--out", "/tmp/never-written.parquet"], "--dur=1"),
    ("ebpf-symbolize", ["run.parquet"], "--cache-d=/tmp/never-used"),
    ("ebpf-upload", ["-"], "--auth-tok=abbrev-SECRET-1"),
    ("ebpf-upload", ["-"], "--basic-auth-pass=abbrev-SECRET-1"),
])
def test_abbreviated_flags_are_refused_without_echoing_their_value(command, args, abbrev):
    # argparse takes unique prefixes by default; the uploader hides whole secret flag names
    # from `ps` only, so `--auth-tok` would have been a token left in the process title
    r = subprocess.run([tool(command), *args, abbrev], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    flag, _, value = abbrev.partition("=")
    assert f"unrecognized arguments: {flag}" in r.stderr
    assert value not in r.stderr
