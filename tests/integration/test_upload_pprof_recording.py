"""`ebpf-upload --format pprof run.parquet`: pprof that keeps build IDs and addresses, so a
server with debug info could symbolize on its side (Pyroscope v1 reads Mapping.build_id and
Location.address)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import tool
from tests.receiver.pprof_decode import decode_pprof
from tests.receiver.server import Receiver

pytestmark = [pytest.mark.bpf, pytest.mark.slow]


def build_id(path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True).stdout
    return re.search(r"Build ID: ([0-9a-f]+)", out).group(1)


@pytest.fixture(scope="module")
def recording(fixture_bins, tmp_path_factory):
    rec = tmp_path_factory.mktemp("pprof-rec") / "run.parquet"
    subprocess.run([tool("ebpf-record"), "--no-progress", "--out", str(rec), "--",
                    str(fixture_bins / "workload-pie"), "3"], check=True, timeout=120,
                   capture_output=True)
    return rec


def pprof_facts(bodies: list[bytes]) -> tuple[set[str], set[tuple[str, str, int]], int]:
    """Build IDs; (mapping file, build ID, address) of every location with an address; and
    the samples' total count."""
    build_ids, located, total = set(), set(), 0
    for body in bodies:
        p = decode_pprof(body)
        strings = p.string_table
        mappings = {m.id: m for m in p.mapping}
        build_ids |= {strings[m.build_id] for m in p.mapping if m.build_id}
        for loc in p.location:
            m = mappings[loc.mapping_id]
            if loc.address:
                located.add((strings[m.filename], strings[m.build_id], loc.address))
        total += sum(s.value[0] for s in p.sample)
    return build_ids, located, total


def test_pprof_from_a_recording_keeps_build_ids_and_addresses(fixture_bins, recording):
    rec = recording
    folded = subprocess.run([tool("ebpf-symbolize"), str(rec)], capture_output=True,
                            text=True, check=True).stdout
    folded_total = sum(int(line.rsplit(" ", 1)[1]) for line in folded.splitlines()
                       if line and not line.startswith("#"))
    with Receiver() as rx:
        r = subprocess.run([tool("ebpf-upload"), "--server-address", rx.url,
                            "--application-name", "pprof.rec", "--format", "pprof", str(rec)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert rx.ingests and all(i.format == "pprof" for i in rx.ingests)
        assert sum(i.total for i in rx.ingests) == folded_total
        build_ids, addresses, functions = set(), 0, set()
        for ing in rx.ingests:
            p = decode_pprof(ing.body)
            strings = p.string_table
            build_ids |= {strings[m.build_id] for m in p.mapping if m.build_id}
            addresses += sum(1 for loc in p.location if loc.address)
            functions |= {strings[f.name] for f in p.function}
    assert build_id(fixture_bins / "workload-pie") in build_ids
    assert build_id(fixture_bins / "libfixture.so") in build_ids
    assert addresses > 0
    assert {"alpha", "lib_beta", "gamma_fn"} <= functions


def test_recorder_piped_straight_into_the_uploader_sends_pprof_with_build_ids(fixture_bins,
                                                                            rounds_for):
    """`ebpf-record --out - | ebpf-upload - --format pprof`: the uploader symbolizes the
    stream itself, window by window, and every recorded sample arrives."""
    with Receiver() as rx:
        # ~3 s of CPU as fixed work, so a loaded machine does not thin out the samples
        chain = (f"WORKLOAD_ROUNDS={rounds_for(3)} {tool('ebpf-record')} --no-progress "
                 "--out - -- "
                 f"{fixture_bins / 'workload-pie'} 0 | {tool('ebpf-upload')} - --format pprof "
                 f"--server-address {rx.url} --application-name pprof.chain")
        r = subprocess.run(["bash", "-c", "set -o pipefail; " + chain], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        recorded = int(re.search(r"ebpf-record: ([\d,]+) samples", r.stderr).group(1)
                       .replace(",", ""))
        assert recorded > 100
        assert sum(i.total for i in rx.ingests) == recorded, r.stderr
        build_ids = set()
        for ing in rx.ingests:
            p = decode_pprof(ing.body)
            build_ids |= {p.string_table[m.build_id] for m in p.mapping if m.build_id}
    assert build_id(fixture_bins / "libfixture.so") in build_ids


def test_the_symbolizer_s_folded_stream_keeps_addresses_for_pprof(fixture_bins, recording,
                                                                 tmp_path):
    """`ebpf-symbolize run.parquet | ebpf-upload - --format pprof` (issue 11, item 7): the
    folded text's frames lines carry what names alone lose, so the uploaded pprof has the
    same mappings, build IDs and addresses as `ebpf-symbolize --format pprof` writes."""
    direct = subprocess.run([tool("ebpf-symbolize"), str(recording), "--format", "pprof",
                             "-q"], capture_output=True, check=True, timeout=120).stdout
    want_ids, want_located, want_total = pprof_facts([direct])
    for protocol in ("ingest", "push"):
        with Receiver() as rx:
            chain = (f"{tool('ebpf-symbolize')} -q {recording} | {tool('ebpf-upload')} - "
                     f"--protocol {protocol} --format pprof --server-address {rx.url} "
                     "--application-name pprof.folded")
            r = subprocess.run(["bash", "-c", "set -o pipefail; " + chain],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            assert "dropped" not in r.stderr, r.stderr
            ids, located, total = pprof_facts([i.body for i in rx.ingests])
        assert total == want_total > 100, protocol
        assert build_id(fixture_bins / "workload-pie") in ids
        assert build_id(fixture_bins / "libfixture.so") in ids
        assert ids == want_ids, protocol
        assert located == want_located, protocol


def test_three_commands_send_pprof_with_build_ids(fixture_bins, rounds_for):
    """`ebpf-record --out - | ebpf-symbolize - | ebpf-upload - --format pprof`: every
    recorded sample arrives, with the build IDs of the objects it ran in."""
    with Receiver() as rx:
        chain = (f"WORKLOAD_ROUNDS={rounds_for(3)} {tool('ebpf-record')} --no-progress "
                 f"--out - -- {fixture_bins / 'workload-pie'} 0 | {tool('ebpf-symbolize')} - "
                 f"-q | {tool('ebpf-upload')} - --format pprof --server-address {rx.url} "
                 "--application-name pprof.three")
        r = subprocess.run(["bash", "-c", "set -o pipefail; " + chain], capture_output=True,
                           text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        recorded = int(re.search(r"ebpf-record: ([\d,]+) samples", r.stderr).group(1)
                       .replace(",", ""))
        ids, located, total = pprof_facts([i.body for i in rx.ingests])
    assert recorded > 100
    assert total == recorded, r.stderr
    assert build_id(fixture_bins / "libfixture.so") in ids
    assert build_id(fixture_bins / "workload-pie") in ids
    assert len(located) > 10
