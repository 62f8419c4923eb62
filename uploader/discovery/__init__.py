"""Service discovery: Pyroscope labels for a process from Kubernetes or its cgroup.

    d = Discovery(DiscoveryOptions(kubernetes_node="node-1", only_services=True))
    d.start()
    labels = d.labels_for(cgroup_path, container_id)   # None: drop (only_services)
"""

from uploader.discovery.discovery import Discovery, DiscoveryOptions
from uploader.discovery.errors import PodListError
from uploader.discovery.labels import label_name

__all__ = ["Discovery", "DiscoveryOptions", "PodListError", "label_name"]
