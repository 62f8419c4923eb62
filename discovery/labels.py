"""Labels for a process, from a Kubernetes pod (API JSON) or from its cgroup alone.

The names follow the `pyroscope ebpf` agent: `node`, `namespace`, `pod`, `container_name`,
`container_id`, the pod's `app.kubernetes.io/{name,version,instance}` labels with every
character Pyroscope does not allow in a label name (`[A-Za-z0-9_]`) as `_`, and `service_name`
from the pod annotation `pyroscope.io/service_name`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from discovery.cgroups import CgroupInfo, split_cri_container_id

APP_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/version", "app.kubernetes.io/instance")
SERVICE_NAME_ANNOTATION = "pyroscope.io/service_name"
# kubelet's annotation on a static pod's mirror: the hash that names the pod's cgroup
# (`pod<hash>`), while metadata.uid of the mirror pod is a different, API-made UUID.
CONFIG_HASH_ANNOTATION = "kubernetes.io/config.hash"
_NOT_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_]")
# Pyroscope's `app.cpu{k=v,...}` has no quoting: these would change the name's meaning, and
# ebpf-upload refuses such a value. Annotations are free text written by pod owners, so one
# pod must not be able to stop every upload of the node.
_NOT_VALUE_CHAR = re.compile(r"[,}={\n]")


def label_name(key: str) -> str:
    """`app.kubernetes.io/name` -> `app_kubernetes_io_name`."""
    return _NOT_LABEL_CHAR.sub("_", key)


@dataclass(frozen=True)
class PodContainer:
    """One container of a pod, as the API server reports it."""

    container_id: str
    runtime: str | None
    pod_uid: str
    labels: Mapping[str, str]


def pod_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    """Labels every container of the pod shares."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    out: dict[str, str] = {}
    if spec.get("nodeName"):
        out["node"] = spec["nodeName"]
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    if meta.get("name"):
        out["pod"] = meta["name"]
    pod_label_values = meta.get("labels") or {}
    for key in APP_LABELS:
        if pod_label_values.get(key):
            out[label_name(key)] = pod_label_values[key]
    service = (meta.get("annotations") or {}).get(SERVICE_NAME_ANNOTATION)
    if service:
        out["service_name"] = label_value(service.strip())
    return out


def label_value(value: str) -> str:
    """`a,b=c` -> `a_b_c`: a value Pyroscope's name syntax can carry."""
    return _NOT_VALUE_CHAR.sub("_", value)


def pod_uids(pod: Mapping[str, Any]) -> list[str]:
    """The UIDs the pod's cgroup can be named after (its own, and a static pod's config hash)."""
    meta = pod.get("metadata") or {}
    uids = [meta["uid"]] if meta.get("uid") else []
    config_hash = (meta.get("annotations") or {}).get(CONFIG_HASH_ANNOTATION)
    if config_hash:
        uids.append(config_hash)
    return uids


def pod_containers(pod: Mapping[str, Any]) -> Iterator[PodContainer]:
    """Containers that have a runtime ID (started at least once), with their labels.

    Init and ephemeral containers are included: their processes are profiled too.
    """
    status = pod.get("status") or {}
    shared = pod_labels(pod)
    uid = (pod.get("metadata") or {}).get("uid", "")
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            cri_id = cs.get("containerID")
            if not cri_id:
                continue  # not started yet (ContainerCreating)
            runtime, cid = split_cri_container_id(cri_id)
            labels = dict(shared)
            labels["container_name"] = cs.get("name", "")
            labels["container_id"] = cid
            yield PodContainer(cid, runtime, uid, labels)


def local_labels(info: CgroupInfo) -> dict[str, str]:
    """What the cgroup alone tells: a container ID, or the systemd unit of a host process."""
    out: dict[str, str] = {}
    if info.container_id:
        out["container_id"] = info.container_id
    if info.systemd_unit:
        out["systemd_unit"] = info.systemd_unit
    return out
