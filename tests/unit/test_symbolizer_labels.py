"""ebpf-symbolize splits each window by the labels service discovery gives each process.

Recordings here are synthetic: `process` rows with real cgroup paths of docker, containerd,
cri-o and a systemd unit (shapes from discovery/cgroups.py), and samples without stacks, so that
the stack is the process name alone and each block's content says whose samples it holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_common.command import run
from discovery.discovery import Discovery
from symbolizer.cli import symbolize_main
from tests.helpers.kube_api import (
    APP_CID,
    FORBIDDEN,
    NODE,
    SIDECAR_CID,
    FakeApi,
    serve,
)
from tests.helpers.labelled import (
    COUNTS,
    CRIO_CID,
    DOCKER_CID,
    PROCESSES,
    SECOND,
    T0,
    k8s,
    labelled_recording,
)


def blocks(folded: str) -> list[tuple[dict, dict[str, int]]]:
    """(header, {stack: count}) per block."""
    out: list[tuple[dict, dict[str, int]]] = []
    for line in folded.splitlines():
        if line.startswith("# ebpf-profiler {"):
            out.append((json.loads(line[len("# ebpf-profiler "):]), {}))
        elif line and not line.startswith("#"):
            stack, n = line.rsplit(" ", 1)
            out[-1][1][stack] = out[-1][1].get(stack, 0) + int(n)
    return out


def symbolize(args: list, capsys, discovery: Discovery | None = None) -> tuple[int, str, str]:
    rc = run("ebpf-symbolize", lambda argv: symbolize_main(argv, discovery=discovery),
             [str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def recording(tmp_path) -> Path:
    return labelled_recording(tmp_path / "labelled.parquet")


@pytest.fixture
def api() -> Iterator[FakeApi]:
    yield from serve(FakeApi())


@pytest.fixture(autouse=True)
def no_discovery_env(monkeypatch):
    monkeypatch.delenv("PYROSCOPE_KUBERNETES_NODE", raising=False)
    monkeypatch.delenv("PYROSCOPE_ONLY_SERVICES", raising=False)


def test_off_cluster_each_container_and_unit_is_its_own_block(recording, tmp_path, capsys):
    rc, out, _ = symbolize([recording, "--cache-dir", tmp_path], capsys)
    assert rc == 0
    got = {json.dumps(h["labels"], sort_keys=True): stacks for h, stacks in blocks(out)}
    expected = {
        "dockerd-app": {"container_id": DOCKER_CID},
        "checkout": {"container_id": APP_CID},
        "envoy": {"container_id": SIDECAR_CID},
        "crio-app": {"container_id": CRIO_CID},
        "nginx": {"systemd_unit": "nginx.service"},
        "bash": {},
    }
    assert len(got) == len(expected), list(got)
    for comm, labels in expected.items():
        # the whole run in one window: each process's block holds its samples of both windows
        assert got[json.dumps(labels, sort_keys=True)] == {comm: 2 * COUNTS[comm]}


def test_window_split_keeps_label_sets_apart_per_window(recording, tmp_path, capsys):
    rc, out, _ = symbolize([recording, "--window", "1s", "--cache-dir", tmp_path], capsys)
    assert rc == 0
    got = blocks(out)
    assert len(got) == 2 * len(PROCESSES)
    windows = {(h["from_ns"], h["until_ns"]) for h, _ in got}
    assert windows == {(T0, T0 + SECOND), (T0 + SECOND, T0 + 2 * SECOND)}
    for h, stacks in got:
        assert len(stacks) == 1
        comm = next(iter(stacks))
        assert stacks[comm] == COUNTS[comm]
        assert h["labels"].get("container_id") == PROCESSES[comm][1]


def test_only_services_drops_unplaced_processes_and_says_so(recording, tmp_path, capsys):
    rc, out, err = symbolize([recording, "--only-services", "--cache-dir", tmp_path], capsys)
    assert rc == 0
    comms = {c for _, stacks in blocks(out) for c in stacks}
    assert comms == set(PROCESSES) - {"bash"}  # a login session is no service
    assert f"dropped {2 * COUNTS['bash']} of {2 * sum(COUNTS.values())} samples" in err
    assert "bash" in err


def test_only_services_from_the_environment(recording, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYROSCOPE_ONLY_SERVICES", "1")
    rc, out, _ = symbolize([recording, "--cache-dir", tmp_path], capsys)
    assert rc == 0 and "bash" not in out
    monkeypatch.setenv("PYROSCOPE_ONLY_SERVICES", "false")
    rc, out, _ = symbolize([recording, "--cache-dir", tmp_path], capsys)
    assert rc == 0 and "bash" in out
    monkeypatch.setenv("PYROSCOPE_ONLY_SERVICES", "maybe")
    rc, out, err = symbolize([recording, "--cache-dir", tmp_path], capsys)
    assert rc != 0 and "PYROSCOPE_ONLY_SERVICES" in err and "Traceback" not in err


def test_kubernetes_pods_label_their_containers(recording, tmp_path, capsys, api):
    rc, out, _ = symbolize([recording, "--cache-dir", tmp_path], capsys, k8s(api))
    assert rc == 0
    by_comm = {next(iter(stacks)): h["labels"] for h, stacks in blocks(out)}
    assert by_comm["checkout"] == {
        "node": NODE, "namespace": "shop", "pod": "checkout-7d9f8b6c5d-x2x9k",
        "container_name": "checkout", "container_id": APP_CID,
        "app_kubernetes_io_name": "checkout", "app_kubernetes_io_version": "1.4.2",
        "app_kubernetes_io_instance": "checkout-prod", "service_name": "shop-checkout"}
    assert by_comm["envoy"]["container_name"] == "envoy"
    assert by_comm["envoy"]["pod"] == by_comm["checkout"]["pod"]
    # not in the node's pods: what the cgroup says, and the node
    assert by_comm["nginx"] == {"node": NODE, "systemd_unit": "nginx.service"}
    assert by_comm["crio-app"] == {"node": NODE, "container_id": CRIO_CID}
    # pods are listed once up front and once more per unknown container at most
    assert 1 <= api.pod_lists() <= 1 + 3


def test_kubernetes_only_services_keeps_pods_alone(recording, tmp_path, capsys, api):
    rc, out, err = symbolize([recording, "--cache-dir", tmp_path], capsys,
                             k8s(api, only_services=True))
    assert rc == 0
    comms = {c for _, stacks in blocks(out) for c in stacks}
    assert comms == {"checkout", "envoy"}
    dropped = sum(2 * COUNTS[c] for c in PROCESSES if c not in comms)
    assert f"--only-services dropped {dropped} of" in err


def test_rbac_denied_is_one_line_and_symbolization_goes_on(recording, tmp_path, capsys, api):
    api.answer = lambda: (403, FORBIDDEN)
    warned: list[str] = []
    rc, out, _ = symbolize([recording, "--cache-dir", tmp_path], capsys, k8s(api, warned=warned))
    assert rc == 0
    assert len(warned) == 1 and "403 Forbidden" in warned[0] and "20-rbac.yaml" in warned[0]
    got = blocks(out)
    assert sum(sum(s.values()) for _, s in got) == 2 * sum(COUNTS.values())
    assert all("pod" not in h["labels"] for h, _ in got)


def test_kubernetes_node_outside_a_cluster_warns_once_and_goes_on(recording, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("PYROSCOPE_KUBERNETES_NODE", NODE)
    rc, out, err = symbolize([recording, "--cache-dir", tmp_path], capsys)
    assert rc == 0
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "not running in a pod" in warnings[0], err
    assert sum(sum(s.values()) for _, s in blocks(out)) == 2 * sum(COUNTS.values())


def test_library_engine_without_labeler_gives_one_profile_per_window(recording):
    from recording.reader import iter_batches
    from symbolizer.engine import Engine
    from symbolizer.options import SymbolizeOptions

    engine = Engine(SymbolizeOptions(cache_dir=None))
    windows = [w for b in iter_batches(str(recording)) for w in engine.feed(b)]
    assert len(windows) == 2 and all(len(w) == 1 and w[0].labels == {} for w in windows)
