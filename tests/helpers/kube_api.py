"""A fake Kubernetes API server on 127.0.0.1 and the pods it lists (no tests here).

It answers GET /api/v1/pods?fieldSelector=spec.nodeName=... with PodList JSON shaped like a
real API server's (fields as `kubectl get pods -o json` prints them), or with the metav1.Status
a real server sends for 403."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client

NODE = "ip-10-0-1-23.ec2.internal"
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.c2VjcmV0LXRva2Vu.sig"
APP_CID = "acb62391578595ec849d87d8556369cee7f935f0425097fd5f870df0e8aabd3c"
SIDECAR_CID = "47e320f795efcec1ecf2001c3a09c95e3701ed87de8256837b70b10e23818251"
INIT_CID = "a534eb629135e43beb13213976e37bb2ab95cba4c0d1d0b4e27c6bc4d8091b83"
NEW_CID = "0ecc7949cbaf17e883264ea1055f60b184a7cb264fd759c4a692e1155086fe2d"
APISERVER_CID = "c203a2647ef1ad78e990157c50331f3b6ef0b03336cf08535d6bf7faa5421415"
APP_UID = "dde1244b-5bb5-4297-b544-85f3bc0d80bf"
STATIC_HASH = "187bff14cccb94f179e943eacce55bb3"


def scope(uid: str, cid: str, qos: str = "burstable") -> str:
    """The cgroup v2 path kubelet's systemd driver gives a containerd container."""
    return (f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid.replace('-', '_')}"
            f".slice/cri-containerd-{cid}.scope")


def container_status(name: str, cid: str | None, image: str) -> dict[str, Any]:
    st: dict[str, Any] = {
        "name": name, "image": image, "imageID": f"{image}@sha256:{'1f' * 32}",
        "ready": cid is not None, "restartCount": 0, "started": cid is not None,
        "state": ({"running": {"startedAt": "2025-11-25T08:00:00Z"}} if cid else
                  {"waiting": {"reason": "ContainerCreating"}}),
    }
    if cid:
        st["containerID"] = f"containerd://{cid}"
    return st


def pod(name: str, namespace: str, uid: str, statuses: list[dict[str, Any]], *,
        labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        init_statuses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid, "resourceVersion": "48213",
            "creationTimestamp": "2025-11-25T07:59:58Z", "labels": labels or {},
            "annotations": annotations or {},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": name.rsplit("-", 1)[0], "uid": "5f1c",
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {"nodeName": NODE, "serviceAccountName": "default",
                 "containers": [{"name": s["name"], "image": s["image"]} for s in statuses]},
        "status": {"phase": "Running", "hostIP": "10.0.1.23", "podIP": "10.0.1.77",
                   "qosClass": "Burstable", "containerStatuses": statuses,
                   "initContainerStatuses": init_statuses or []},
    }


def app_pod() -> dict[str, Any]:
    return pod(
        "checkout-7d9f8b6c5d-x2x9k", "shop", APP_UID,
        [container_status("checkout", APP_CID, "registry.example.com/shop/checkout:1.4.2"),
         container_status("envoy", SIDECAR_CID, "envoyproxy/envoy:v1.31.0")],
        labels={"app.kubernetes.io/name": "checkout", "app.kubernetes.io/version": "1.4.2",
                "app.kubernetes.io/instance": "checkout-prod", "pod-template-hash": "7d9f8b6c5d"},
        annotations={"pyroscope.io/service_name": "shop-checkout"},
        init_statuses=[container_status("migrate", INIT_CID, "registry.example.com/shop/m:1")],
    )


def static_pod() -> dict[str, Any]:
    p = pod(f"kube-apiserver-{NODE}", "kube-system", "6a1c0e4e-1b7c-4f55-9a43-0b6c5f3e2d11",
            [container_status("kube-apiserver", APISERVER_CID, "registry.k8s.io/kube-apiserver")],
            labels={"component": "kube-apiserver", "tier": "control-plane"},
            annotations={"kubernetes.io/config.hash": STATIC_HASH,
                         "kubernetes.io/config.mirror": STATIC_HASH})
    return p


def pending_pod() -> dict[str, Any]:
    return pod("batch-29381-abcde", "jobs", "0b4d2f7e-8f3a-4e1b-9d6c-2a7e5f1c3b90",
               [container_status("worker", None, "busybox:1.36")])


def pod_list(pods: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "48250"}, "items": pods}


FORBIDDEN = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": 'pods is forbidden: User "system:serviceaccount:ebpf-profiler:ebpf-profiler" '
               'cannot list resource "pods" in API group "" at the cluster scope',
    "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403,
}


class FakeApi(ThreadingHTTPServer):
    """Answers pod lists; `answer` is swapped by tests; `requests` records what came in."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answer: Callable[[], tuple[int, dict[str, Any]]] = \
            lambda: (200, pod_list([app_pod(), static_pod(), pending_pod()]))
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def pod_lists(self) -> int:
        return sum(1 for r in self.requests if r["path"] == "/api/v1/pods")


class Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def do_GET(self) -> None:
        u = urlparse(self.path)
        self.server.requests.append({"path": u.path, "query": parse_qs(u.query),
                                     "authorization": self.headers.get("Authorization")})
        status, body = self.server.answer() if u.path == "/api/v1/pods" else (404, {})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(server: FakeApi) -> Iterator[FakeApi]:
    t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def config_for(url: str) -> client.Configuration:
    cfg = client.Configuration()
    cfg.host = url
    # what InClusterConfigLoader sets from the token file
    cfg.api_key = {"BearerToken": f"bearer {TOKEN}"}
    return cfg
