"""Listing the pods of one node through the official `kubernetes` client.

The client gives us the in-cluster configuration (service account token, refreshed as projected
tokens rotate; the cluster CA; KUBERNETES_SERVICE_HOST/PORT), TLS and authentication. We ask for
the raw JSON (`_preload_content=False`) instead of the generated models: a PodList of a busy
node is a few megabytes, and the models are only a slower way to read the handful of fields we
need.

Failures become `PodListError` with a `kind` and a message naming the fix. They never carry the
token: messages are built from the API server's Status message, the host and the node name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import (
    SERVICE_HOST_ENV_NAME,
    SERVICE_PORT_ENV_NAME,
    InClusterConfigLoader,
)

from discovery.errors import SERVICE_ACCOUNT_DIR, PodListError

RBAC_HINT = "apply deploy/kubernetes/20-rbac.yaml (a ClusterRole with get/list/watch on pods)"
__all__ = ["SERVICE_ACCOUNT_DIR", "NodePodLister", "PodListError", "in_cluster_configuration"]


def in_cluster_configuration(
    service_account_dir: str = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> client.Configuration:
    """The configuration a pod gets from its service account, or PodListError saying what is
    missing."""
    env = os.environ if environ is None else environ
    if not env.get(SERVICE_HOST_ENV_NAME) or not env.get(SERVICE_PORT_ENV_NAME):
        raise PodListError(
            "not-in-cluster",
            f"{SERVICE_HOST_ENV_NAME}/{SERVICE_PORT_ENV_NAME} are not set: not running in a pod. "
            "Run the agent as the DaemonSet in deploy/kubernetes/, or drop --kubernetes-node",
        )
    token = os.path.join(service_account_dir, "token")
    ca = os.path.join(service_account_dir, "ca.crt")
    if not os.path.isfile(token):
        raise PodListError(
            "token-missing",
            f"no service account token at {token}: set serviceAccountName and leave "
            "automountServiceAccountToken on (deploy/kubernetes/40-daemonset.yaml)",
        )
    cfg = client.Configuration()
    try:
        InClusterConfigLoader(token_filename=token, cert_filename=ca, environ=env).load_and_set(cfg)
    except ConfigException as exc:
        raise PodListError("token-missing", f"service account in {service_account_dir}: {exc}") \
            from None
    return cfg


class NodePodLister:
    """Lists the pods scheduled on one node (fieldSelector spec.nodeName=NODE)."""

    def __init__(
        self,
        configuration: client.Configuration,
        node: str,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        # One retry: the default (3) multiplies the connect timeout of an unreachable server
        # while samples wait.
        configuration.retries = 1
        self.host = configuration.host
        self.node = node
        self._timeout = (min(3.0, timeout_s), timeout_s)
        self._api = client.CoreV1Api(client.ApiClient(configuration))

    def list_pods(self) -> list[dict[str, Any]]:
        try:
            resp = self._api.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node}",
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            body = getattr(resp, "data", b"")  # urllib3 response (no preload)
        except client.ApiException as exc:
            raise self._api_error(exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PodListError(
                "unreachable",
                f"cannot reach the API server at {self.host}: {_short_reason(exc)}",
            ) from None
        try:
            items = json.loads(body).get("items")
        except (ValueError, AttributeError):
            items = None
        if not isinstance(items, list):
            raise PodListError("bad-answer", f"the API server at {self.host} did not answer "
                                             "with a PodList")
        return items

    def _api_error(self, exc: client.ApiException) -> PodListError:
        status = exc.status or 0
        detail = _status_message(exc.body) or str(exc.reason or "")
        if status == 403:
            return PodListError(
                "forbidden",
                f"the API server refused to list pods on node {self.node} (403 Forbidden: "
                f"{detail}); {RBAC_HINT}",
            )
        if status == 401:
            return PodListError(
                "unauthorized",
                f"the API server at {self.host} rejected the service account token "
                f"(401 Unauthorized: {detail}); check the token is mounted and not expired",
            )
        return PodListError("bad-answer", f"listing pods failed with HTTP {status}: {detail}")


def _status_message(body: object) -> str:
    """The `message` of a metav1.Status body, e.g. `pods is forbidden: User "system:..."`."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return ""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        return ""
    return message if isinstance(message, str) else ""


def _short_reason(exc: BaseException) -> str:
    """urllib3 nests the cause (MaxRetryError -> NewConnectionError -> ConnectionRefused)."""
    reason = getattr(exc, "reason", None)
    while isinstance(reason, BaseException) and getattr(reason, "reason", None) is not None:
        reason = getattr(reason, "reason", None)
    text = str(reason if reason is not None else exc)
    # urllib3 prefixes the connection's repr, `HTTPConnection(host='h', port=1): `; the host is
    # already in our message
    return re.sub(r"^\w+\([^)]*\):\s*", "", text)
