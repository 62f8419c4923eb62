"""pprof sink read by its real reader, `go tool pprof` (Debian's golang-go, installed by
set-up)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from profiles.model import FrameKind
from symbolizer.sinks import pprof
from tests.conftest import setup_tool
from tests.helpers.sinks import (
    EXE,
    EXE_BID,
    EXE_MAP,
    LIB,
    LIB_BID,
    first_window,
    folded_lines,
    pprof_bytes,
    self_and_total,
    synthetic_profiles,
)


def _go_env(tmp: Path) -> dict[str, str]:
    # No network here: local toolchain only, caches in a temporary directory.
    return {
        **os.environ,
        "HOME": str(tmp),
        "GOCACHE": str(tmp / "gocache"),
        "GOPATH": str(tmp / "gopath"),
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
    }


@pytest.fixture
def go_pprof(tmp_path):
    go = setup_tool("go", "golang-go")

    def run(*args: str, data: bytes) -> str:
        path = tmp_path / "profile.pb.gz"
        path.write_bytes(data)
        res = subprocess.run(
            [go, "tool", "pprof", "-symbolize=none", *args, str(path)],
            capture_output=True, text=True, env=_go_env(tmp_path), timeout=120,
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    return run


def _top(text: str) -> dict[str, tuple[int, int]]:
    """`go tool pprof -top` rows: function -> (flat, cum)."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\s*(\d+)\s+\S+%\s+\S+%\s+(\d+)\s+\S+%\s+(.+?)(?: \(inline\))?$", line)
        if m:
            rows[m.group(3)] = (int(m.group(1)), int(m.group(2)))
    return rows


def test_go_pprof_totals_and_functions_match_folded(go_pprof):
    # GIVEN the synthetic profiles (two windows) as one pprof
    profiles = synthetic_profiles()
    data = pprof_bytes(profiles)
    # WHEN Go's pprof lists every function by sample count
    top = go_pprof("-top", "-sample_index=samples", "-nodefraction=0", "-edgefraction=0",
                   "-nodecount=1000", data=data)
    # THEN the total and each function's flat and cumulative counts are the folded ones,
    # less the process-name roots, which are the `comm` label in pprof
    total = sum(folded_lines(profiles).values())
    assert re.search(rf"Total samples = {total}\b", top), top
    flat, cum = self_and_total(profiles)
    for p in profiles:
        for stack in p.stacks:
            if stack[0].kind is FrameKind.ROOT:
                cum.pop(stack[0].name, None)
    rows = _top(top)
    assert set(rows) == set(cum)
    for name, (f, c) in rows.items():
        assert (f, c) == (flat[name], cum[name]), name


def test_go_pprof_cpu_time_is_count_times_period(go_pprof):
    profiles = synthetic_profiles()
    raw = go_pprof("-raw", data=pprof_bytes(profiles))
    assert "PeriodType: cpu nanoseconds" in raw
    assert "Period: 10000000" in raw  # 1e9 / 100 Hz
    assert "Duration: 20s" in raw
    pairs = re.findall(r"^\s+(\d+)\s+(\d+):", raw, re.M)
    assert pairs, raw
    assert all(int(ns) == int(n) * 10_000_000 for n, ns in pairs)
    assert sum(int(n) for n, _ in pairs) == sum(p.total for p in profiles)


def test_go_pprof_shows_mappings_with_build_ids_and_inlined_lines(go_pprof):
    raw = go_pprof("-raw", data=pprof_bytes([first_window()]))
    mappings = raw.split("Mappings")[1]
    assert re.search(rf"{re.escape(EXE)} {EXE_BID}", mappings)
    assert re.search(rf"{re.escape(LIB)} {LIB_BID}", mappings)
    # The inlined chain is one location, innermost first, with each frame's file:line.
    m = re.search(r"inner_helper helper.h:5 s=0\n\s+helper helper.h:12 s=0\n"
                  r"\s+run_rounds workload.c:53 s=0", raw)
    assert m, raw
    # Direct recursion keeps three frames at one address (one location, three times).
    rec = re.search(r"^\s+(\d+):\s+0x[0-9a-f]+ M=\d+ recurse ", raw, re.M)
    assert rec
    lid = rec.group(1)
    assert re.search(rf":\s+{lid} {lid} {lid} \d+\s*$", raw, re.M), raw
    # Labels: the profile's, plus comm from the root frame, which is no location.
    assert "comm:[workload] pid:[4242]" in raw
    assert " workload :0" not in raw.split("Locations")[1]


def test_profile_to_pprof_bytes_is_gzip_of_one_window_with_its_time(go_pprof):
    p = first_window()
    data = pprof.profile_to_pprof_bytes(p)
    assert data[:2] == b"\x1f\x8b"
    assert data == pprof.profile_to_pprof_bytes(first_window())  # reproducible
    raw = go_pprof("-raw", data=data)
    assert "Duration: 10s" in raw
    assert "2025-11-25 08:00:00 +0000 UTC" in raw  # START_NS


def test_return_frames_one_byte_off_share_their_objects_mapping(go_pprof):
    # GIVEN frames as the symbolizer makes them: callers carry the ELF address of the call
    # (return address - 1) next to the absolute return address
    from dataclasses import replace

    from tests.helpers.sinks import ALPHA, BETA, MAIN, RUN, root

    def ret(f):
        return replace(f, elf_addr=f.elf_addr - 1)

    p = first_window()
    p.stacks = {(root("workload"), ret(MAIN), ret(RUN), ALPHA): 5,
                (root("workload"), ret(MAIN), ret(RUN), BETA): 7}
    # WHEN written as pprof
    raw = go_pprof("-raw", data=pprof.profile_to_pprof_bytes(p))
    # THEN each object has one mapping, whose offset maps addresses back to file offsets
    # (== ELF addresses in this PIE)
    mappings = [ln for ln in raw.split("Mappings")[1].splitlines() if ln.strip()]
    assert len(mappings) == 2, mappings
    start, _, offset = re.match(r"\d+: (0x[0-9a-f]+)/(0x[0-9a-f]+)/(0x[0-9a-f]+) " +
                                re.escape(EXE), mappings[0]).groups()
    assert int(start, 16) == EXE_MAP.start
    assert ALPHA.address - int(start, 16) + int(offset, 16) == ALPHA.elf_addr
