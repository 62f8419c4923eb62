"""Labels from service discovery travel from ebpf-symbolize through ebpf-upload: each service's
samples go to the server in their own upload, under their own `<app>.cpu{labels}` name, as
Pyroscope's agent sends them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from cli_common.command import run
from symbolizer.cli import symbolize_main
from tests.conftest import tool
from tests.helpers.kube_api import APP_CID, NODE, SIDECAR_CID, FakeApi, serve
from tests.helpers.labelled import (
    COUNTS,
    CRIO_CID,
    DOCKER_CID,
    PROCESSES,
    k8s,
    labelled_recording,
)
from tests.receiver import Receiver


@pytest.fixture
def api() -> Iterator[FakeApi]:
    yield from serve(FakeApi())


def upload(folded, rx: Receiver, tmp_path) -> None:
    r = subprocess.run([tool("ebpf-upload"), str(folded), "--server-address", rx.url,
                        "--application-name", "svc",
                        "--spool-dir", str(tmp_path / "spool")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_each_service_is_uploaded_under_its_own_name(api, tmp_path, monkeypatch):
    monkeypatch.delenv("PYROSCOPE_ONLY_SERVICES", raising=False)
    # a recent window (servers refuse old profiles), aligned like the recorder's drains
    t0 = (time.time_ns() // 10**10 - 2) * 10**10
    rec = labelled_recording(tmp_path / "rec.parquet", t0=t0)
    folded = tmp_path / "out.folded"
    rc = run("ebpf-symbolize", lambda argv: symbolize_main(argv, discovery=k8s(api)),
             [str(rec), "--out", str(folded), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    with Receiver() as rx:
        upload(folded, rx, tmp_path)
        ingests = list(rx.ingests)
    assert ingests, "nothing was uploaded"
    names = {i.name for i in ingests}
    # one name per label set: 2 pod containers, 2 other containers, 1 unit, 1 unlabelled
    assert len(names) == len(PROCESSES), sorted(names)
    by_comm: dict[str, set[str]] = {}
    for i in ingests:
        assert i.app == "svc"
        for stack in i.stacks:
            by_comm.setdefault(stack.split(";")[0], set()).add(i.name)
    # every process's samples went to exactly one name, and no two processes share one
    assert all(len(v) == 1 for v in by_comm.values()), by_comm
    assert len({next(iter(v)) for v in by_comm.values()}) == len(PROCESSES)
    checkout = rx.matching(app="svc", labels={"container_name": "checkout"})
    assert {i.labels["pod"] for i in checkout} == {"checkout-7d9f8b6c5d-x2x9k"}
    assert all(i.labels["service_name"] == "shop-checkout" and i.labels["node"] == NODE
               for i in checkout)
    assert sum(i.total for i in checkout) == 2 * COUNTS["checkout"]
    for cid in (APP_CID, SIDECAR_CID, DOCKER_CID, CRIO_CID):
        assert rx.matching(labels={"container_id": cid}), cid
    unit = rx.matching(labels={"systemd_unit": "nginx.service"})
    assert sum(i.total for i in unit) == 2 * COUNTS["nginx"]


def test_a_recording_given_to_the_uploader_is_labelled_the_same_way(tmp_path, monkeypatch):
    """ebpf-upload symbolizes recordings itself (for pprof with build IDs); off-cluster it
    labels them by container ID and systemd unit as ebpf-symbolize does."""
    monkeypatch.delenv("PYROSCOPE_ONLY_SERVICES", raising=False)
    monkeypatch.delenv("PYROSCOPE_KUBERNETES_NODE", raising=False)
    t0 = (time.time_ns() // 10**10 - 2) * 10**10
    rec = labelled_recording(tmp_path / "rec.parquet", t0=t0)
    with Receiver() as rx:
        upload(rec, rx, tmp_path)
        ingests = list(rx.ingests)
    for cid in (APP_CID, SIDECAR_CID, DOCKER_CID, CRIO_CID):
        assert any(i.labels.get("container_id") == cid for i in ingests), cid
    unit = [i for i in ingests if i.labels.get("systemd_unit") == "nginx.service"]
    assert sum(i.total for i in unit) == 2 * COUNTS["nginx"]
