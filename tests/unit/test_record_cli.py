"""Bad input to ebpf-record: one line, non-zero exit, no traceback, before any BPF is loaded.
These run without root: the checks come before the environment check."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import tool


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("ebpf-record"), *args], capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--out", "/nonexistent-dir/run.parquet"], "does not exist"),
        (["--out", "/tmp"], "is a directory"),
        (["--out", "{tmp}/x.parquet", "--pid", "999999999"], "no process with pid 999999999"),
        (["--out", "{tmp}/x.parquet", "--", "/no/such/command"], "command not found"),
        (["--out", "{tmp}/x.parquet", "--bogus"], "unrecognized arguments: --bogus"),
        (["--out", "{tmp}/x.parquet", "--sample-rate", "0"], "out of range"),
        (["--out", "{tmp}/x.parquet", "--duration", "soon"], "invalid duration"),
        (["--out", "{tmp}/x.parquet", "--"], "nothing after --"),
        # float() reads these: a deadline of nan or inf never comes, an interval of nan
        # made a traceback
        (["--out", "{tmp}/x.parquet", "--duration", "nan"], "invalid duration 'nan'"),
        (["--out", "{tmp}/x.parquet", "--duration", "inf"], "invalid duration 'inf'"),
        (["--out", "{tmp}/x.parquet", "--drain-interval", "nan"], "invalid duration 'nan'"),
        (["--out", "{tmp}/x.parquet", "--drain-interval=-inf"], "invalid duration '-inf'"),
        (["--out", "{tmp}/x.parquet", "--duration", "-3"], "invalid duration '-3'"),
        (["--out", "{tmp}/x.parquet", "--drain-interval", "0"], "must be positive"),
        (["--recover", "{tmp}/no-such.partial", "--out", "-"], "give --out FILE"),
        (["--recover", "{tmp}/.x.parquet.abcdefgh.partial"], "cannot read"),
    ],
)
def test_bad_input_is_one_clear_line(args, needle, tmp_path):
    # in a directory of its own: whatever else /tmp holds cannot change the answer
    r = run(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ebpf-record: error:") and needle in lines[0]


def test_a_closed_stdout_for_out_dash_is_one_line():
    r = subprocess.run(f"{tool('ebpf-record')} --out - --duration 1 >&-", shell=True,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 5, r.stderr
    assert r.stderr.strip().splitlines() == [
        "ebpf-record: error: --out -: stdout is closed; pipe it (| ebpf-symbolize -) or give "
        "--out FILE"]
