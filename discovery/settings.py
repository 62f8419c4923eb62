"""Discovery configured as the agent is: flags first, then PYROSCOPE_KUBERNETES_NODE and
PYROSCOPE_ONLY_SERVICES. Shared by ebpf-symbolize and ebpf-upload (which symbolizes when a
recording is piped straight in)."""

from __future__ import annotations

import os
import sys

from discovery.discovery import Discovery, DiscoveryOptions
from recording.errors import UsageError


def env_bool(name: str) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"{name}={os.environ[name]!r} is not a boolean; use true or false")


def discovery_for(prog: str, kubernetes_node: str | None = None,
                  only_services: bool | None = None) -> Discovery:
    """Kubernetes pods with a node name, else what the cgroup shows. Problems (API
    unreachable, RBAC) are one warning line; profiling goes on unlabelled."""
    node = kubernetes_node or os.environ.get("PYROSCOPE_KUBERNETES_NODE") or None
    only = only_services if only_services is not None else env_bool("PYROSCOPE_ONLY_SERVICES")
    d = Discovery(DiscoveryOptions(kubernetes_node=node, only_services=only),
                  warn=lambda m: print(f"{prog}: warning: {m}", file=sys.stderr, flush=True))
    d.start()
    return d
