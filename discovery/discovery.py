"""Service discovery: which service a process belongs to, as Pyroscope labels.

With a Kubernetes node name, the pods of that node are listed from the API server and indexed
by container ID; a process is placed through the container ID in its cgroup. The list is
refreshed every `refresh_interval_s`, and sooner when a container ID shows up that the list does
not know (a pod started since), at most once per `unknown_refresh_gap_s` and once per unknown
ID, so a process the API never reports (a pause container, a container outside Kubernetes)
cannot make every lookup call the API server.

Without a node name, discovery labels what the cgroup shows: the container ID, or the systemd
unit of a host process.

Discovery failures never stop profiling: they are reported once (and again only when the kind
of failure changes or it recovers), and processes go unlabelled - or, with only_services,
dropped, which the message says.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from discovery.cgroups import CgroupInfo, container_info, path_info, read_cgroup
from discovery.errors import SERVICE_ACCOUNT_DIR, PodListError
from discovery.labels import (
    PodContainer,
    local_labels,
    pod_containers,
    pod_labels,
    pod_uids,
)

if TYPE_CHECKING:  # the client is imported only with a node name (it costs ~0.15 s)
    from kubernetes import client

    from discovery.kube import NodePodLister


@dataclass(frozen=True)
class DiscoveryOptions:
    """How discovery runs.

    kubernetes_node: the node this agent runs on (PYROSCOPE_KUBERNETES_NODE, set from
      spec.nodeName in the DaemonSet). Empty/None: no Kubernetes API, cgroup labels only.
    only_services: drop processes discovery cannot place (containerd, runc, kubelet, ...).
    refresh_interval_s: list the node's pods at least this often.
    unknown_refresh_gap_s: at most one extra listing this often, triggered by unknown containers.
    request_timeout_s: read timeout of one listing.
    service_account_dir: where the service account token and CA are mounted.
    """

    kubernetes_node: str | None = None
    only_services: bool = False
    refresh_interval_s: float = 60.0
    unknown_refresh_gap_s: float = 10.0
    request_timeout_s: float = 10.0
    service_account_dir: str = SERVICE_ACCOUNT_DIR


def _stderr_warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class Discovery:
    """Labels for processes. Thread-safe; API calls happen inside `labels_for` when due."""

    def __init__(
        self,
        options: DiscoveryOptions,
        *,
        configuration: client.Configuration | None = None,
        environ: Mapping[str, str] | None = None,
        warn: Callable[[str], None] = _stderr_warn,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """configuration: an explicit API client configuration (tests, kubeconfig users);
        default: the in-cluster service account."""
        self.options = options
        self._warn = warn
        self._clock = clock
        self._lock = threading.Lock()
        self._by_container: dict[str, PodContainer] = {}
        self._by_pod_uid: dict[str, dict[str, str]] = {}
        self._last_list: float | None = None
        self._tried_unknown: set[str] = set()
        self._problem: PodListError | None = None
        self._listed_once = False
        self._lister: NodePodLister | None = None
        self._config_error: PodListError | None = None
        if options.kubernetes_node:
            from discovery.kube import NodePodLister, in_cluster_configuration
            try:
                cfg = configuration or in_cluster_configuration(
                    options.service_account_dir, environ)
                self._lister = NodePodLister(
                    cfg, options.kubernetes_node, timeout_s=options.request_timeout_s)
            except PodListError as exc:
                self._config_error = exc

    # -- public API -------------------------------------------------------------------------

    @property
    def kubernetes(self) -> bool:
        return bool(self.options.kubernetes_node)

    @property
    def problem(self) -> str | None:
        """The current discovery failure, as one line, or None when discovery works."""
        return str(self._problem) if self._problem else None

    def start(self) -> None:
        """List the pods now (rather than at the first lookup) so a problem is said at start."""
        if self.kubernetes:
            with self._lock:
                self._refresh()

    def labels_for(self, cgroup_path: str | None, container_id: str | None = None
                   ) -> dict[str, str] | None:
        """Labels for a process with this cgroup path (and container ID, when the recording
        has it), or None when only_services is on and discovery cannot place the process.

        cgroup_path may also be the whole /proc/PID/cgroup text (the recording's `cgroup`
        column keeps it as read): a path starts with `/`, the file's lines with `N:`."""
        text = cgroup_path or ""
        info = path_info(text) if text.startswith("/") or not text else container_info(text)
        if container_id and container_id != info.container_id:
            info = CgroupInfo(info.path, container_id, info.runtime, info.pod_uid, None)
        return self.labels_for_info(info)

    def labels_for_cgroup_text(self, cgroup_text: str) -> dict[str, str] | None:
        """Same, from the whole text of /proc/PID/cgroup."""
        return self.labels_for_info(container_info(cgroup_text))

    def labels_for_pid(self, pid: int, proc_root: str = "/proc") -> dict[str, str] | None:
        """Same, for a live process (reads /proc/PID/cgroup)."""
        return self.labels_for_cgroup_text(read_cgroup(pid, proc_root) or "")

    def labels_for_info(self, info: CgroupInfo) -> dict[str, str] | None:
        if not self.kubernetes:
            labels = local_labels(info)
            if self.options.only_services and not labels:
                return None
            return labels
        with self._lock:
            placed = self._kubernetes_labels(info)
        if placed is not None:
            return placed
        if self.options.only_services:
            return None
        labels = local_labels(info)
        labels["node"] = self.options.kubernetes_node or ""
        return labels

    # -- Kubernetes -------------------------------------------------------------------------

    def _kubernetes_labels(self, info: CgroupInfo) -> dict[str, str] | None:
        now = self._clock()
        if self._last_list is None or now - self._last_list >= self.options.refresh_interval_s:
            self._refresh()
        cid = info.container_id
        if not cid:
            return None
        known = self._by_container.get(cid)
        if known is None and cid not in self._tried_unknown and self._problem is None:
            # A container the last list did not have: its pod may have started since.
            self._tried_unknown.add(cid)
            if self._last_list is None or now - self._last_list >= \
                    self.options.unknown_refresh_gap_s:
                self._refresh()
                known = self._by_container.get(cid)
        if known is not None:
            return dict(known.labels)
        if info.pod_uid and info.pod_uid in self._by_pod_uid:
            # A restarted container whose new ID is not in the pod's status yet: the pod is
            # known, the container name is not.
            labels = dict(self._by_pod_uid[info.pod_uid])
            labels["container_id"] = cid
            return labels
        return None

    def _refresh(self) -> None:
        self._last_list = self._clock()
        try:
            if self._lister is None:
                raise self._config_error or PodListError("not-in-cluster", "no API server")
            pods = self._lister.list_pods()
        except PodListError as exc:
            self._report(exc)
            return
        self._index(pods)
        if self._problem is not None:
            self._warn(f"kubernetes discovery works again: {len(pods)} pods on node "
                       f"{self.options.kubernetes_node}")
            self._problem = None
        if not pods and not self._listed_once:
            node = self.options.kubernetes_node
            self._warn(f"kubernetes discovery: no pods are scheduled on node {node!r}: check "
                       "PYROSCOPE_KUBERNETES_NODE (the DaemonSet sets it from spec.nodeName)")
        self._listed_once = True

    def _index(self, pods: list[dict[str, Any]]) -> None:
        by_container: dict[str, PodContainer] = {}
        by_uid: dict[str, dict[str, str]] = {}
        for pod in pods:
            for c in pod_containers(pod):
                by_container[c.container_id] = c
            shared = pod_labels(pod)
            for uid in pod_uids(pod):
                by_uid[uid] = shared
        self._by_container = by_container
        self._by_pod_uid = by_uid
        # IDs still unknown after this list may be retried after the next periodic list
        self._tried_unknown = {c for c in self._tried_unknown if c not in by_container}

    def _report(self, exc: PodListError) -> None:
        if self._problem is not None and self._problem.kind == exc.kind:
            return
        self._problem = exc
        if self.options.only_services:
            consequence = ("with --only-services every process is dropped until pods can be "
                           "listed" if not self._by_container else
                           "with --only-services, processes of pods started since the last "
                           "successful listing are dropped")
        else:
            consequence = ("profiles are sent without pod labels" if not self._by_container
                           else "labels come from the last successful listing")
        self._warn(f"kubernetes discovery: {exc}; {consequence}")
