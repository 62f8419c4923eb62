"""ebpf-symbolize against a hostile debuginfod server, end to end on a recording of the C
fixture library (built by gcc; the client's own limits are in tests/unit)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import tool
from tests.helpers.crafted import crafted_recording, nm_address
from tests.helpers.debuginfod_server import BID, Server, trickle


def test_ebpf_symbolize_is_not_held_by_a_trickling_server(fixture_bins, tmp_path):
    # end to end, as the continuous chain runs it: the old client read one byte every 0.2 s
    # of a 100 kB "debug file" (5.5 hours), well within its 10 s per-read timeout
    s = Server({"/": trickle})
    lib = fixture_bins / "libfixture.so"
    rec = crafted_recording(tmp_path / "r.parquet", path="/nonexistent/libfixture.so",
                            build_id=BID, elf_addr=nm_address(lib, "lib_beta") + 4,
                            layout_of=lib)
    try:
        r = subprocess.run([tool("ebpf-symbolize"), str(rec), "--cache-dir", str(tmp_path),
                            "--debuginfod-url", s.url, "--debug-dir", str(tmp_path / "none")],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "DEBUGINFOD_MAXTIME": "2"})
    except subprocess.TimeoutExpired:
        pytest.fail("ebpf-symbolize still downloading from a trickling server after 30 s")
    finally:
        s.close()
    assert r.returncode == 0, r.stderr
    assert "download not done within 2 s" in r.stderr
