"""`--format pprof`: the body is a valid pprof for Go's own reader, and the receiver reads the
same stacks back as from folded."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.conftest import tool
from tests.helpers.profiles import profile
from tests.receiver import Receiver
from uploader.options import UploadOptions
from uploader.prepare import build_requests

S = 1_000_000_000
STACKS = {"workload;main;run_rounds;alpha": 25, "workload;main;run_rounds;lib_beta": 50,
          "workload;main;run_rounds;gamma_fn": 25, "kworker;[unknown]": 3}


def test_pprof_body_read_by_go_tool_pprof(tmp_path):
    if not shutil.which("go"):
        pytest.skip("go is not installed (scripts/setup.sh installs golang-go)")
    o = UploadOptions(application_name="p", format="pprof")
    (req,) = build_requests(profile(STACKS), o)
    assert req.param("format") == "pprof" and req.body[:2] == b"\x1f\x8b"
    path = tmp_path / "body.pb.gz"
    path.write_bytes(req.body)
    out = subprocess.run(["go", "tool", "pprof", "-traces", "-sample_index=samples", str(path)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    # -traces prints each sample: label lines (`comm:  workload`), then its value and
    # frames, leaf first. The process name that roots a folded stack is the comm label.
    got: dict[str, int] = {}
    for t in out.split("-----------+"):
        comm = [ln.split(":", 1)[1].strip() for ln in t.splitlines()
                if ln.strip().startswith("comm:")]
        lines = [ln for ln in t.splitlines() if ln.strip() and not ln.startswith("----")
                 and not ln.strip().split()[0].endswith(":")]
        if not lines or not lines[0].split()[0].isdigit():
            continue
        value = int(lines[0].split()[0])
        frames = [lines[0].split(None, 1)[1].strip()] + [ln.strip() for ln in lines[1:]]
        got[";".join(comm + list(reversed(frames)))] = value
    assert got == STACKS


def test_pprof_upload_reads_back_like_folded(tmp_path):
    now = int(time.time()) // 10 * 10 - 10
    src = tmp_path / "in.folded"
    src.write_text("".join(f"{k} {v}\n" for k, v in STACKS.items()))
    with Receiver() as rx:
        for fmt in ("folded", "pprof"):
            p = subprocess.run([tool("ebpf-upload"), str(src), "--server-address", rx.url,
                                "--application-name", fmt, "--format", fmt,
                                "--from", str(now), "--until", str(now + 10),
                                "--spool-dir", str(tmp_path / "spool")],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, p.stderr
        assert rx.stacks(app="pprof") == rx.stacks(app="folded") == STACKS
        (ing,) = rx.matching(app="pprof")
        assert ing.format == "pprof" and (ing.from_s, ing.until_s) == (now, now + 10)
