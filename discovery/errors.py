"""What discovery needs before it talks to Kubernetes, kept free of the `kubernetes` package so
that off-cluster discovery (cgroup labels only) does not pay for importing the client."""

from __future__ import annotations

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class PodListError(Exception):
    """Pods could not be listed. kind: not-in-cluster, token-missing, unauthorized, forbidden,
    unreachable, bad-answer."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
