"""Every command reports a bad flag as one line naming it, exit 2, no usage dump."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import tool
from tests.receiver import Receiver


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
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: {command} [OPTIONS]")
    assert "Exit codes:" in r.stdout and "  2    bad flags or arguments" in r.stdout


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


@pytest.mark.parametrize("extra", [[], ["--auth-token", "t"]])  # with and without re-exec
def test_upload_with_stdin_closed_is_one_line(tmp_path, extra):
    # `ebpf-upload - <&-`: the spool's lock file took fd 0 and epoll refused it (traceback)
    r = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", tool("ebpf-upload"), "-",
                        "--spool-dir", str(tmp_path / "spool"), *extra],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ": error:" in ln]
    assert "stdin is closed" in line


def test_upload_of_a_file_with_stdin_and_stdout_closed_works(tmp_path):
    folded = tmp_path / "in.folded"
    folded.write_text("main;work 5\n")
    with Receiver() as rx:
        r = subprocess.run(["sh", "-c", 'exec "$0" "$1" --server-address "$2" --spool-dir "$3" '
                            '--application-name closed <&- >&-', tool("ebpf-upload"),
                            str(folded), rx.url, str(tmp_path / "spool")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert rx.stacks() == {"main;work": 5}
