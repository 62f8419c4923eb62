"""Which container, pod or systemd unit a process belongs to, read from /proc/PID/cgroup.

Pure functions over the file's text; `read_cgroup` is the only one that touches /proc.

/proc/PID/cgroup has one line per hierarchy, `ID:CONTROLLERS:PATH` (cgroups(7)). Under cgroup v2
there is a single line `0::/path`; under v1 one line per controller (`4:memory:/...`,
`1:name=systemd:/...`); hybrid hosts have both. The path is relative to the reader's cgroup
namespace root, so an agent in a container without the host cgroup namespace can see
`0::/../../kubepods-...` - only the last components matter here.

Container runtimes name the leaf cgroup after the 64-hex container ID (the CRI `containerID`
without its `containerd://` / `cri-o://` / `docker://` scheme), in one of these shapes, all seen
in real /proc/PID/cgroup files:

- systemd driver (kubelet `cgroupDriver: systemd`, docker `native.cgroupdriver=systemd`):
  `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID>.slice/cri-containerd-<ID>.scope`,
  `.../crio-<ID>.scope`, `.../docker-<ID>.scope`, `/system.slice/docker-<ID>.scope`.
  systemd unit names cannot hold `-` inside a name component, so kubelet writes the pod UID
  with `_` for `-` (kubelet's cgroup manager escapes it); we turn it back.
- the same under cgroup v1's `name=systemd` hierarchy when containerd itself creates the unit:
  `/system.slice/containerd.service/kubepods-burstable-pod<UID>.slice:cri-containerd:<ID>`
  (systemd's `slice:prefix:name` notation).
- cgroupfs driver: `/kubepods/burstable/pod<UID>/<ID>`, `/kubepods/pod<UID>/<ID>` (guaranteed
  QoS has no class directory), plain docker `/docker/<ID>`. A bare ID under kubepods does not
  say which runtime made it, so `runtime` is None there; the API server's containerStatuses
  tell (see discovery/).
- CRI-O's monitor runs in `crio-conmon-<ID>.scope`: that process is the runtime's, not the
  container's, so it gets no container ID (it is what --only-services drops).

Static (file-defined) pods have a 32-hex UID (the config hash) rather than a dashed UUID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The runtime prefixes of systemd scope names, mapped to the scheme the API server uses in
# status.containerStatuses[].containerID (`containerd://`, `cri-o://`, `docker://`).
_RUNTIME_BY_PREFIX = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker"}

_HEX64 = r"[0-9a-f]{64}"
# One path component naming a container: `<prefix>-<id>.scope`, `<prefix>-<id>` (cri-o with
# cgroupfs), or a bare `<id>` (cgroupfs driver). `crio-conmon-<id>` does not match: `conmon-`
# is not hex.
_CONTAINER_COMPONENT = re.compile(
    rf"^(?:(?P<prefix>cri-containerd|crio|docker)-)?(?P<id>{_HEX64})(?:\.scope)?$"
)
# systemd's `slice:prefix:name` form, written by containerd into the v1 name=systemd hierarchy.
_CONTAINER_COLON = re.compile(
    rf"^[^:]*\.slice:(?P<prefix>cri-containerd|crio|docker):(?P<id>{_HEX64})$"
)
_POD_UID = re.compile(
    r"(?:^|-)pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
    r"|[0-9a-f]{32})(?:\.slice)?(?::|$)"
)
_SYSTEMD_SERVICE = re.compile(r"^[^/]+\.service$")


@dataclass(frozen=True)
class CgroupInfo:
    """What a process's cgroup says about where it runs.

    path: the cgroup path chosen from the file (see `container_info`), "" when the file is empty.
    container_id: 64 lowercase hex characters, or None outside a container.
    runtime: "containerd", "cri-o" or "docker" when the path names it, else None.
    pod_uid: the Kubernetes pod UID (dashed form, or 32 hex for static pods), or None.
    systemd_unit: the innermost `.service` unit for processes outside containers and pods
      (e.g. "nginx.service"), else None.
    """

    path: str
    container_id: str | None = None
    runtime: str | None = None
    pod_uid: str | None = None
    systemd_unit: str | None = None


def path_info(path: str) -> CgroupInfo:
    """Parse one cgroup path (the third field of a /proc/PID/cgroup line)."""
    container_id = runtime = pod_uid = None
    components = [c for c in path.split("/") if c]
    # Innermost first: a nested container (docker-in-docker, a container's own sub-cgroups such
    # as `crio-<id>.scope/container`) is labelled by the deepest container ID in its path.
    for comp in reversed(components):
        m = _CONTAINER_COMPONENT.match(comp) or _CONTAINER_COLON.match(comp)
        if m:
            container_id = m.group("id")
            prefix = m.group("prefix")
            if prefix:
                runtime = _RUNTIME_BY_PREFIX[prefix]
            elif "docker" in components:
                # cgroupfs docker outside Kubernetes: /docker/<id>
                runtime = "docker"
            break
    for comp in reversed(components):
        pm = _POD_UID.search(comp)
        if pm:
            pod_uid = pm.group("uid").replace("_", "-")
            break
    unit = None
    if container_id is None and pod_uid is None:
        unit = next((c for c in reversed(components) if _SYSTEMD_SERVICE.match(c)), None)
    return CgroupInfo(path, container_id, runtime, pod_uid, unit)


def _parse_lines(cgroup_text: str) -> list[tuple[str, str, str]]:
    lines = []
    for raw in cgroup_text.splitlines():
        parts = raw.strip().split(":", 2)
        if len(parts) == 3:
            lines.append((parts[0], parts[1], parts[2]))
    return lines


def container_info(cgroup_text: str) -> CgroupInfo:
    """Parse the whole text of /proc/PID/cgroup (v1, v2 or hybrid).

    The path reported is the first of: a line naming a container, else the v2 line (`0::`),
    else the v1 `name=systemd` line, else the first line. On hybrid hosts docker may use only the
    v1 hierarchies while `0::` shows containerd.service, so a container line wins over `0::`.
    """
    lines = _parse_lines(cgroup_text)
    if not lines:
        return CgroupInfo("")
    infos = [(ctrl, path_info(path)) for _, ctrl, path in lines]
    for _, info in infos:
        if info.container_id:
            return info
    for hier_id, ctrl, _ in lines:
        if hier_id == "0" and ctrl == "":
            return next(info for c, info in infos if c == "")
    for ctrl, info in infos:
        if ctrl == "name=systemd":
            return info
    return infos[0][1]


def read_cgroup(pid: int, proc_root: str = "/proc") -> str | None:
    """The text of /proc/PID/cgroup, or None when the process is gone or unreadable."""
    try:
        with open(f"{proc_root}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def split_cri_container_id(cri_id: str) -> tuple[str | None, str]:
    """`containerd://<id>` (status.containerStatuses[].containerID) -> ("containerd", "<id>")."""
    scheme, sep, rest = cri_id.partition("://")
    if not sep:
        return None, cri_id
    return scheme, rest
