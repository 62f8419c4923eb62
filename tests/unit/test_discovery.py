"""discovery against a fake Kubernetes API server on 127.0.0.1.

The fake answers GET /api/v1/pods?fieldSelector=spec.nodeName=... with PodList JSON shaped like
a real API server's (fields as `kubectl get pods -o json` prints them), or with the metav1.Status
a real server sends for 403; the official `kubernetes` client talks to it over HTTP, and over
HTTPS with a CA for the in-cluster configuration.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from discovery.discovery import Discovery, DiscoveryOptions
from discovery.labels import label_name
from tests.helpers.kube_api import (
    APISERVER_CID,
    APP_CID,
    APP_UID,
    FORBIDDEN,
    INIT_CID,
    NEW_CID,
    NODE,
    SIDECAR_CID,
    STATIC_HASH,
    TOKEN,
    FakeApi,
    app_pod,
    config_for,
    container_status,
    pod,
    pod_list,
    scope,
    serve,
)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    yield from serve(FakeApi())


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def discovery(api: FakeApi, warnings: list[str] | None = None, **opts: Any
              ) -> tuple[Discovery, Clock, list[str]]:
    warned: list[str] = [] if warnings is None else warnings
    clock = Clock()
    d = Discovery(DiscoveryOptions(kubernetes_node=NODE, **opts),
                  configuration=config_for(api.url), warn=warned.append, clock=clock)
    return d, clock, warned


# --- labels from the API --------------------------------------------------------------------

def test_a_container_gets_its_pod_labels(api):
    d, _, warned = discovery(api)
    labels = d.labels_for(scope(APP_UID, APP_CID), APP_CID)
    assert labels == {
        "node": NODE, "namespace": "shop", "pod": "checkout-7d9f8b6c5d-x2x9k",
        "container_name": "checkout", "container_id": APP_CID,
        "app_kubernetes_io_name": "checkout", "app_kubernetes_io_version": "1.4.2",
        "app_kubernetes_io_instance": "checkout-prod", "service_name": "shop-checkout",
    }
    # the sidecar and the init container of the same pod are told apart by container name
    assert d.labels_for(scope(APP_UID, SIDECAR_CID))["container_name"] == "envoy"
    assert d.labels_for(scope(APP_UID, INIT_CID))["container_name"] == "migrate"
    assert warned == []
    # asked once, for this node only, with the service account token
    assert api.pod_lists() == 1
    req = api.requests[0]
    assert req["query"]["fieldSelector"] == [f"spec.nodeName={NODE}"]
    assert req["authorization"] == f"bearer {TOKEN}"


def test_a_pod_without_annotation_or_app_labels_gets_only_what_it_has(api):
    d, _, _ = discovery(api)
    labels = d.labels_for(None, APISERVER_CID)
    assert labels is not None
    assert labels["pod"] == f"kube-apiserver-{NODE}"
    assert "service_name" not in labels
    assert not any(k.startswith("app_kubernetes_io") for k in labels)


def test_static_pod_found_by_config_hash_when_its_container_is_new(api):
    # GIVEN a restarted static-pod container, not yet in the mirror pod's status
    d, _, _ = discovery(api)
    path = (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_HASH}.slice/"
            f"cri-containerd-{NEW_CID}.scope")
    labels = d.labels_for(path)
    # THEN it is placed in its pod, with its own container ID and no container name
    assert labels is not None
    assert labels["pod"] == f"kube-apiserver-{NODE}"
    assert labels["container_id"] == NEW_CID
    assert "container_name" not in labels


def test_unknown_container_triggers_one_rate_limited_refresh(api):
    d, clock, _ = discovery(api, unknown_refresh_gap_s=10.0, refresh_interval_s=60.0)
    d.start()
    assert api.pod_lists() == 1
    # GIVEN a pod that starts after the first listing
    new_pod = pod("payments-5c4b-q8w7e", "shop", "c1d2e3f4-0000-4000-8000-000000000001",
                  [container_status("payments", NEW_CID, "registry.example.com/payments:2")])
    api.answer = lambda: (200, pod_list([app_pod(), new_pod]))
    new_path = scope("c1d2e3f4-0000-4000-8000-000000000001", NEW_CID)
    # WHEN its container shows up within the gap: no extra listing yet
    clock.t += 5
    assert d.labels_for(new_path) == {"node": NODE, "container_id": NEW_CID}
    assert api.pod_lists() == 1
    # and the same ID does not ask again on its own...
    clock.t += 10
    d.labels_for(new_path)
    assert api.pod_lists() == 1
    # ...but a different unknown container past the gap lists again, which places both
    other = "f" * 64
    d.labels_for(scope("c1d2e3f4-0000-4000-8000-000000000002", other))
    assert api.pod_lists() == 2
    assert d.labels_for(new_path)["pod"] == "payments-5c4b-q8w7e"
    # the periodic refresh still happens
    clock.t += 61
    d.labels_for(scope(APP_UID, APP_CID))
    assert api.pod_lists() == 3


def test_an_unknown_container_past_the_gap_is_looked_up_at_once(api):
    d, clock, _ = discovery(api, unknown_refresh_gap_s=10.0)
    d.start()
    new_pod = pod("payments-5c4b-q8w7e", "shop", "c1d2e3f4-0000-4000-8000-000000000001",
                  [container_status("payments", NEW_CID, "registry.example.com/payments:2")])
    api.answer = lambda: (200, pod_list([new_pod]))
    clock.t += 11
    labels = d.labels_for(None, NEW_CID)
    assert labels is not None and labels["container_name"] == "payments"
    assert api.pod_lists() == 2


@pytest.mark.parametrize(
    "cgroup_path",
    [
        "/system.slice/containerd.service",
        "/system.slice/kubelet.service",
        # CRI-O's monitor, the runtime's own process in the pod slice
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod207aaad1_659f_4db8_88e0_"
        "46e0cdcc3004.slice/crio-conmon-32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b"
        "6224a6.scope",
        # a container of a pod this node does not run (listing is per node)
        scope("9d0c2b1a-0000-4000-8000-00000000abcd", "e" * 64),
        "/",
    ],
)
def test_only_services_drops_what_discovery_cannot_place(api, cgroup_path):
    d, _, _ = discovery(api, only_services=True)
    assert d.labels_for(cgroup_path) is None
    assert d.labels_for(scope(APP_UID, APP_CID)) is not None
    # without only-services the same process is kept, labelled with what is known locally
    kept, _, _ = discovery(api)
    labels = kept.labels_for(cgroup_path)
    assert labels is not None and labels["node"] == NODE
    assert "pod" not in labels


def test_a_pause_container_is_placed_in_its_pod(api):
    # The sandbox (pause) container never appears in containerStatuses, but its cgroup sits in
    # the pod's slice: it belongs to the pod, with no container name.
    d, _, _ = discovery(api, only_services=True)
    labels = d.labels_for(scope(APP_UID, "e" * 64))
    assert labels is not None
    assert labels["pod"] == "checkout-7d9f8b6c5d-x2x9k" and "container_name" not in labels


def test_node_without_pods_is_said_once(api):
    api.answer = lambda: (200, pod_list([]))
    d, clock, warned = discovery(api)
    d.start()
    clock.t += 120
    d.labels_for("/system.slice/kubelet.service")
    assert api.pod_lists() == 2
    assert len(warned) == 1 and "no pods are scheduled on node" in warned[0]
    assert "PYROSCOPE_KUBERNETES_NODE" in warned[0]


# --- failures: one clear message, profiling goes on ------------------------------------------

def test_rbac_denied_is_one_clear_message(api):
    api.answer = lambda: (403, FORBIDDEN)
    d, clock, warned = discovery(api)
    for _ in range(3):
        assert d.labels_for(scope(APP_UID, APP_CID)) == {"node": NODE, "container_id": APP_CID}
        clock.t += 61
    assert api.pod_lists() == 3  # keeps trying at the refresh interval, quietly
    assert len(warned) == 1
    msg = warned[0]
    assert "403 Forbidden" in msg and 'cannot list resource "pods"' in msg
    assert "deploy/kubernetes/20-rbac.yaml" in msg
    assert "without pod labels" in msg
    assert TOKEN not in msg and "bearer" not in msg.lower()
    assert d.problem is not None and "403" in d.problem


def test_rbac_denied_with_only_services_says_everything_is_dropped(api):
    api.answer = lambda: (403, FORBIDDEN)
    d, _, warned = discovery(api, only_services=True)
    assert d.labels_for(scope(APP_UID, APP_CID)) is None
    assert len(warned) == 1
    assert "every process is dropped until pods can be listed" in warned[0]


def test_recovery_is_said_and_labels_return(api):
    api.answer = lambda: (403, FORBIDDEN)
    d, clock, warned = discovery(api)
    d.start()
    assert "pod" not in d.labels_for(scope(APP_UID, APP_CID))
    api.answer = lambda: (200, pod_list([app_pod()]))
    clock.t += 61
    assert d.labels_for(scope(APP_UID, APP_CID))["pod"] == "checkout-7d9f8b6c5d-x2x9k"
    assert d.problem is None
    assert len(warned) == 2 and "works again" in warned[1]


def test_a_failure_after_success_keeps_the_last_labels(api):
    d, clock, warned = discovery(api)
    d.start()
    api.answer = lambda: (403, FORBIDDEN)
    clock.t += 61
    assert d.labels_for(scope(APP_UID, APP_CID))["pod"] == "checkout-7d9f8b6c5d-x2x9k"
    assert len(warned) == 1 and "last successful listing" in warned[0]


def test_unauthorized_token(api):
    api.answer = lambda: (401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized",
                                "code": 401})
    d, _, warned = discovery(api)
    d.start()
    assert len(warned) == 1 and "401 Unauthorized" in warned[0]
    assert TOKEN not in warned[0]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_api_unreachable():
    warned: list[str] = []
    url = f"http://127.0.0.1:{_closed_port()}"
    d = Discovery(DiscoveryOptions(kubernetes_node=NODE), configuration=config_for(url),
                  warn=warned.append)
    assert d.labels_for(scope(APP_UID, APP_CID)) == {"node": NODE, "container_id": APP_CID}
    assert len(warned) == 1
    assert f"cannot reach the API server at {url}" in warned[0]
    assert "refused" in warned[0].lower()
    assert "\n" not in warned[0]


def test_not_in_a_pod():
    warned: list[str] = []
    d = Discovery(DiscoveryOptions(kubernetes_node=NODE, only_services=True), environ={},
                  warn=warned.append)
    assert d.labels_for(scope(APP_UID, APP_CID)) is None
    assert len(warned) == 1
    assert "KUBERNETES_SERVICE_HOST" in warned[0] and "not running in a pod" in warned[0]
    assert "every process is dropped" in warned[0]


def test_token_missing(tmp_path):
    warned: list[str] = []
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    d = Discovery(DiscoveryOptions(kubernetes_node=NODE, service_account_dir=str(tmp_path)),
                  environ=env, warn=warned.append)
    d.start()
    assert len(warned) == 1
    assert f"no service account token at {tmp_path}/token" in warned[0]
    assert "automountServiceAccountToken" in warned[0]


# --- the in-cluster configuration, over TLS ---------------------------------------------------


# --- outside Kubernetes ------------------------------------------------------------------------

def test_outside_kubernetes_labels_come_from_the_cgroup():
    d = Discovery(DiscoveryOptions(), warn=pytest.fail)
    assert d.labels_for("/system.slice/nginx.service") == {"systemd_unit": "nginx.service"}
    docker = "a1e311027d69c40fe0520f086f7b85bcc62f31ac97b47f1b03d68b494f432b50"
    assert d.labels_for(f"/system.slice/docker-{docker}.scope") == {"container_id": docker}
    assert d.labels_for("/user.slice/user-1000.slice/session-3.scope") == {}
    # the container ID the recorder stored wins over a path that lost it
    assert d.labels_for("/", docker) == {"container_id": docker}


def test_the_whole_cgroup_file_is_accepted_too(api):
    # the recording's `cgroup` column holds /proc/PID/cgroup as read (v1 lines here)
    d, _, _ = discovery(api)
    text = f"12:cpuset:{scope(APP_UID, APP_CID)}\n1:name=systemd:{scope(APP_UID, APP_CID)}\n"
    assert d.labels_for(text)["container_name"] == "checkout"
    assert d.labels_for_cgroup_text(text)["container_name"] == "checkout"


def test_outside_kubernetes_only_services_keeps_units_and_containers():
    d = Discovery(DiscoveryOptions(only_services=True), warn=pytest.fail)
    assert d.labels_for("/system.slice/nginx.service") == {"systemd_unit": "nginx.service"}
    assert d.labels_for("/user.slice/user-1000.slice/session-3.scope") is None
    assert d.labels_for("/") is None


def test_labels_for_this_process():
    d = Discovery(DiscoveryOptions(), warn=pytest.fail)
    import os

    assert isinstance(d.labels_for_pid(os.getpid()), dict)
    assert d.labels_for_pid(2**22 + 7, proc_root="/nonexistent") == {}


def test_a_free_text_service_name_cannot_break_the_profile_name(api):
    odd = app_pod()
    odd["metadata"]["annotations"]["pyroscope.io/service_name"] = " shop,checkout{v=2} "
    api.answer = lambda: (200, pod_list([odd]))
    d, _, _ = discovery(api)
    assert d.labels_for(None, APP_CID)["service_name"] == "shop_checkout_v_2_"


@pytest.mark.parametrize(
    ("key", "name"),
    [("app.kubernetes.io/name", "app_kubernetes_io_name"),
     ("app.kubernetes.io/version", "app_kubernetes_io_version"),
     ("helm.sh/chart", "helm_sh_chart")],
)
def test_label_names(key, name):
    assert label_name(key) == name
