"""A recording of containers and systemd units to label, and discovery against the fake
Kubernetes API (no tests here)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from discovery.discovery import Discovery, DiscoveryOptions
from recording.schema import SCHEMA, rows_to_batch
from tests.helpers.kube_api import (
    APP_CID,
    APP_UID,
    NODE,
    SIDECAR_CID,
    FakeApi,
    config_for,
    scope,
)

T0 = 1_764_057_600_000_000_000


SECOND = 1_000_000_000


DOCKER_CID = "3f1e5c0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e"


CRIO_CID = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"


CRIO_POD = "5c2a7a1e_3b44_4d8e_9c1f_2e6d8b7a9f00"


# comm -> (cgroup path as recorded, container_id as recorded)
PROCESSES: dict[str, tuple[str, str | None]] = {
    "dockerd-app": (f"/system.slice/docker-{DOCKER_CID}.scope", DOCKER_CID),
    "checkout": (scope(APP_UID, APP_CID), APP_CID),
    "envoy": (scope(APP_UID, SIDECAR_CID), SIDECAR_CID),
    "crio-app": (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{CRIO_POD}"
                 f".slice/crio-{CRIO_CID}.scope", CRIO_CID),
    "nginx": ("/system.slice/nginx.service", None),
    "bash": ("/user.slice/user-0.slice/session-3.scope", None),
}


COUNTS = {comm: 10 * (i + 1) for i, comm in enumerate(PROCESSES)}


def labelled_recording(path: Path, windows: int = 2, t0: int = T0) -> Path:
    rows: list[dict] = [{"record": "meta", "key": "sample_rate_hz", "value": "100"},
                        {"record": "meta", "key": "started_ns", "value": str(t0)}]
    for pid, (comm, (cgroup, cid)) in enumerate(PROCESSES.items(), 100):
        rows.append({"record": "process", "pid": pid, "maps_seq": 0, "time_ns": t0,
                     "comm": comm, "cgroup": cgroup, "container_id": cid})
    for w in range(windows):
        ws, we = t0 + w * SECOND, t0 + (w + 1) * SECOND
        for pid, comm in enumerate(PROCESSES, 100):
            rows.append({"record": "sample", "window_start_ns": ws, "window_end_ns": we,
                         "pid": pid, "comm": comm, "count": COUNTS[comm], "user_stack": [],
                         "kernel_stack": [], "user_stack_error": -14, "kernel_stack_error": -14})
        rows.append({"record": "window", "window_start_ns": ws, "window_end_ns": we,
                     "count": sum(COUNTS.values())})
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA), path)
    return path


def k8s(api: FakeApi, only_services: bool = False, warned: list[str] | None = None
        ) -> Discovery:
    return Discovery(DiscoveryOptions(kubernetes_node=NODE, only_services=only_services),
                     configuration=config_for(api.url),
                     warn=(warned.append if warned is not None else lambda m: None))
