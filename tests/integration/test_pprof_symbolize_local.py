"""Server-side symbolization from our pprof: made where the binaries were absent, it names
nothing but `object+0x...`, and `go tool pprof -symbolize=local`, given the binaries, names
every frame from the mappings (start, limit, file offset, path, build ID) and addresses alone.
This is what Grafana Pyroscope's symbolizer does with debug files found by build ID.

The recording is built from a live fixture process's /proc/PID/maps (tests/helpers/synthetic.py,
no BPF needed); the binaries are then moved away before ebpf-symbolize runs, and put back
for pprof. (Debian 12's Go 1.19 pprof cannot be pointed at another directory for these
binaries: its PPROF_BINARY_PATH lookup reads their build ID as empty -- the 8-byte-aligned
.note.gnu.property note before it -- and then refuses each file as a build-ID mismatch; at
the recorded path it opens the file and checks the build ID only when it could read one.)
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess

import pytest

from cli_common.command import run
from profiles.pb import profile_pb2
from symbolizer.cli import symbolize_main
from tests.helpers.synthetic import synthetic_recording

FUNCTIONS = {"alpha", "lib_beta", "gamma_fn", "run_rounds", "main"}


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("go (Debian golang-go) is missing; scripts/setup.sh installs it")
        pytest.skip("go (Debian golang-go) is not installed")
    return go


def _pprof_top(tmp_path, profile, *args: str, binary_path: str | None = None,
               stderr: list[str] | None = None) -> str:
    env = {**os.environ, "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "gocache"),
           "GOPATH": str(tmp_path / "gopath"), "GOTOOLCHAIN": "local", "GOPROXY": "off",
           "PPROF_TMPDIR": str(tmp_path / "pprof-tmp")}
    env.pop("PPROF_BINARY_PATH", None)
    if binary_path:
        env["PPROF_BINARY_PATH"] = binary_path
    res = subprocess.run([_go(), "tool", "pprof", *args, "-top", "-nodecount=100",
                          "-sample_index=samples", str(profile)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    if stderr is not None:
        stderr.append(res.stderr)
    return res.stdout


def _names(top: str) -> set[str]:
    """Function names of `go tool pprof -top` rows (flat flat% sum% cum cum% name)."""
    return {m.group(1) for m in re.finditer(
        r"^\s*\d+\s+\S+%\s+\S+%\s+\d+\s+\S+%\s+(.+?)(?: \(inline\))?$", top, re.M)}


def test_go_pprof_symbolizes_locally_a_pprof_made_without_the_binaries(
        fixture_bins, tmp_path, capsys):
    # GIVEN a recording of the fixture run from its own directory
    bins = tmp_path / "bins"
    bins.mkdir()
    for name in ("workload-pie", "libfixture.so"):
        shutil.copy(fixture_bins / name, bins / name)
    rec = synthetic_recording(tmp_path / "r.parquet", bins / "workload-pie",
                              bins / "libfixture.so")
    # WHEN the binaries are gone and the recording is symbolized into pprof
    moved = tmp_path / "elsewhere"
    bins.rename(moved)
    out = tmp_path / "p.pb.gz"
    rc = run("ebpf-symbolize", symbolize_main,
             [str(rec), "--format", "pprof", "--out", str(out), "--cache-dir",
              str(tmp_path / "cache"), "--debug-dir", str(tmp_path / "none"),
              "--no-default-debug-dir"])
    capsys.readouterr()
    assert rc == 0
    prof = profile_pb2.Profile()
    prof.ParseFromString(gzip.decompress(out.read_bytes()))
    st = prof.string_table
    # THEN the mappings are the recorded ones and claim no symbols
    files = {os.path.basename(st[m.filename]): m for m in prof.mapping}
    assert {"workload-pie", "libfixture.so"} <= set(files)
    assert os.path.basename(st[prof.mapping[0].filename]) == "workload-pie"  # main first
    for name in ("workload-pie", "libfixture.so"):
        m = files[name]
        assert m.build_id and m.memory_start < m.memory_limit
        assert not (m.has_functions or m.has_filenames or m.has_line_numbers), name
    assert all(loc.mapping_id for loc in prof.location)
    # ... pprof alone shows only offsets
    plain = _names(_pprof_top(tmp_path, out, "-symbolize=none"))
    assert not plain & FUNCTIONS, plain
    assert any(n.startswith("workload-pie+0x") for n in plain), plain
    # ... and once the binaries are back, every function is named by pprof from the
    # mappings and addresses alone
    moved.rename(bins)
    named = _names(_pprof_top(tmp_path, out, "-symbolize=local"))
    assert {"alpha", "lib_beta", "gamma_fn"} <= named, named
    assert not any("+0x" in n for n in named), named


def test_symbolized_pprof_is_left_alone_by_local_symbolization(fixture_bins, tmp_path, capsys):
    # GIVEN a pprof made with the binaries present: its mappings say has_functions
    bins = tmp_path / "bins"
    bins.mkdir()
    for name in ("workload-pie", "libfixture.so"):
        shutil.copy(fixture_bins / name, bins / name)
    rec = synthetic_recording(tmp_path / "r.parquet", bins / "workload-pie",
                              bins / "libfixture.so")
    out = tmp_path / "p.pb.gz"
    rc = run("ebpf-symbolize", symbolize_main, [str(rec), "--format", "pprof", "--out",
                                                str(out), "--cache-dir", str(tmp_path / "c")])
    capsys.readouterr()
    assert rc == 0
    prof = profile_pb2.Profile()
    prof.ParseFromString(gzip.decompress(out.read_bytes()))
    st = prof.string_table
    assert all(m.has_functions for m in prof.mapping
               if os.path.basename(st[m.filename]) in ("workload-pie", "libfixture.so"))
    # WHEN pprof symbolizes locally with the binaries gone, THEN it does not even try (it
    # would say it failed) and our names stay
    bins.rename(tmp_path / "elsewhere")
    err: list[str] = []
    named = _names(_pprof_top(tmp_path, out, "-symbolize=local", stderr=err))
    assert "symbolization failed" not in err[0], err[0]
    assert {"alpha", "lib_beta", "gamma_fn"} <= named, named
