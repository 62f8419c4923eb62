"""Service discovery: Pyroscope labels for a process from Kubernetes or its cgroup.

    from discovery.discovery import Discovery, DiscoveryOptions
    d = Discovery(DiscoveryOptions(kubernetes_node="node-1", only_services=True))
    d.start()
    labels = d.labels_for(cgroup_path, container_id)   # None: drop (only_services)

cgroups.py reads /proc/PID/cgroup into a container ID or systemd unit (the recorder stores
it); labels.py turns that, or a pod from the Kubernetes API (kube.py), into labels;
settings.py configures discovery from flags and PYROSCOPE_* as the agent does. Used by
ebpf-record (cgroups only), ebpf-symbolize and ebpf-upload, so it sits below all three.
Nothing is imported here: the recorder loads cgroups.py alone.
"""
