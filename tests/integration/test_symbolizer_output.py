"""ebpf-symbolize's output (issue 8 #9 and the Low items): `--out FILE` is replaced only by a
complete output, never truncated before the input is read; a full or closed stdout and a
closed stdin are one line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from cli_common.command import run
from symbolizer.cli import symbolize_main
from tests.conftest import tool
from tests.helpers.crafted import crafted_recording, nm_address

FORMATS = ["folded", "pprof", "speedscope", "html", "parquet"]


@pytest.fixture
def rec(fixture_bins, tmp_path) -> Path:
    lib = fixture_bins / "libfixture.so"
    return crafted_recording(tmp_path / "run.parquet", path="/usr/lib/libfixture.so",
                             build_id=None, elf_addr=nm_address(lib, "lib_beta") + 4,
                             layout_of=lib, data=lib.read_bytes())


def symbolize(capsys, *args) -> tuple[int, str]:
    rc = run("ebpf-symbolize", symbolize_main, [str(a) for a in args])
    return rc, capsys.readouterr().err


def test_out_equal_to_the_input_keeps_the_recording(rec, tmp_path, capsys):
    before = rec.read_bytes()
    os.symlink(rec, tmp_path / "alias.parquet")
    for out in (rec, tmp_path / "alias.parquet"):
        rc, err = symbolize(capsys, rec, "--out", out, "--cache-dir", tmp_path / "c")
        assert rc == 2
        assert err.strip().endswith("is the recording being read; writing it would destroy "
                                    "the recording: give another file")
    assert rec.read_bytes() == before  # the old code truncated it before reading it


def test_failed_run_leaves_out_untouched(tmp_path, capsys):
    out = tmp_path / "profile.folded"
    out.write_text("yesterday's profile\n")
    bad = tmp_path / "not-a-recording"
    bad.write_bytes(b"garbage" * 100)
    rc, err = symbolize(capsys, bad, "--out", out, "--cache-dir", tmp_path / "c")
    assert rc == 3 and "neither a Parquet recording nor an Arrow stream" in err
    assert out.read_text() == "yesterday's profile\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-recording", "profile.folded"]


def test_out_is_replaced_whole_and_private(rec, tmp_path, capsys):
    out = tmp_path / "profile.folded"
    out.write_text("old\n")
    out.chmod(0o644)
    rc, _ = symbolize(capsys, rec, "--out", out, "--cache-dir", tmp_path / "c")
    assert rc == 0
    assert "victim;lib_beta 7" in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".profile")]


def test_out_to_a_device_is_written_in_place(rec, tmp_path, capsys):
    # renaming over /dev/null would replace the device node with a file, as root
    rc, _ = symbolize(capsys, rec, "--out", "/dev/null", "--cache-dir", tmp_path / "c")
    assert rc == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_stdout_is_one_line(rec, tmp_path, fmt):
    with open("/dev/full", "wb") as full:
        r = subprocess.run([tool("ebpf-symbolize"), str(rec), "--format", fmt,
                            "--cache-dir", str(tmp_path / "c")], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 5
    assert r.stderr == "ebpf-symbolize: error: cannot write stdout: No space left on device\n"


@pytest.mark.parametrize("fmt", ["folded", "parquet"])
def test_full_out_file_is_one_line(rec, tmp_path, fmt):
    r = subprocess.run([tool("ebpf-symbolize"), str(rec), "--format", fmt, "--out",
                        "/dev/full", "--cache-dir", str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 5
    assert r.stderr == ("ebpf-symbolize: error: cannot write --out /dev/full: No space left "
                        "on device\n")


@pytest.mark.parametrize("redirect, message", [
    (">&-", "ebpf-symbolize: error: stdout is closed; give --out FILE\n"),
    ("<&-", "ebpf-symbolize: error: stdin is closed: nothing to read; pipe `ebpf-record "
            "--out -` in or give a recording file\n"),
])
def test_closed_stdin_or_stdout_is_one_line(rec, tmp_path, redirect, message):
    source = "-" if redirect == "<&-" else str(rec)
    r = subprocess.run(["bash", "-c", f'exec "$0" "$1" --cache-dir "$2" {redirect}',
                        tool("ebpf-symbolize"), source, str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr == message
