"""discovery.cgroups against real /proc/PID/cgroup contents.

Every path below was copied from a real machine as quoted in a public bug report or test suite
(source in the comment), not made up: the point is that the patterns match what runtimes write.
"""

from __future__ import annotations

import os

import pytest

from discovery.cgroups import (
    CgroupInfo,
    container_info,
    path_info,
    read_cgroup,
    split_cri_container_id,
)

# (case, /proc/PID/cgroup text, container_id, runtime, pod_uid)
CONTAINERS = [
    (
        # EKS, containerd, systemd driver, cgroup v2 (grafana/beyla#588)
        "containerd-systemd-v2",
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poddde1244b_5bb5_4297_"
        "b544_85f3bc0d80bf.slice/cri-containerd-acb62391578595ec849d87d8556369cee7f935f0425097"
        "fd5f870df0e8aabd3c.scope\n",
        "acb62391578595ec849d87d8556369cee7f935f0425097fd5f870df0e8aabd3c",
        "containerd",
        "dde1244b-5bb5-4297-b544-85f3bc0d80bf",
    ),
    (
        # containerd, systemd driver, cgroup v1 cpuset line (grafana/pyroscope ebpf/sd tests)
        "containerd-systemd-v1",
        "12:cpuset:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod471203d1_984f_"
        "477e_9c35_db96487ffe5e.slice/cri-containerd-a534eb629135e43beb13213976e37bb2ab95cba4c0d1"
        "d0b4e27c6bc4d8091b83.scope\n",
        "a534eb629135e43beb13213976e37bb2ab95cba4c0d1d0b4e27c6bc4d8091b83",
        "containerd",
        "471203d1-984f-477e-9c35-db96487ffe5e",
    ),
    (
        # containerd writing systemd's slice:prefix:name into name=systemd
        # (elastic/apm-nodejs-http-client#164)
        "containerd-systemd-colon-v1",
        "1:name=systemd:/system.slice/containerd.service/kubepods-burstable-podff49d0be_16b7_4a49_"
        "bb9e_8ec1f1f4e27f.slice:cri-containerd:0f99ad5f45163ed14ab8eaf92ed34bb4a631d007f8755a7d"
        "79be614bcb0df0ef\n",
        "0f99ad5f45163ed14ab8eaf92ed34bb4a631d007f8755a7d79be614bcb0df0ef",
        "containerd",
        "ff49d0be-16b7-4a49-bb9e-8ec1f1f4e27f",
    ),
    (
        # kind/k3d: kubelet inside kubelet.slice (a runtime test quoting a raw cgroupsPath)
        "containerd-kind-colon",
        "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        "kubelet-kubepods-besteffort-pod26a1a59b_8013_459b_9a20_a611facb1888.slice:cri-containerd:"
        "1207db63eaeb133a85d2b614d12d95d4dff3f29af60d7a7b3c7d39abdf4bd119\n",
        "1207db63eaeb133a85d2b614d12d95d4dff3f29af60d7a7b3c7d39abdf4bd119",
        "containerd",
        "26a1a59b-8013-459b-9a20-a611facb1888",
    ),
    (
        # static pod (UID = 32-hex config hash), systemd driver (netdata/netdata#4868)
        "containerd-static-pod",
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod187bff14cccb94f179e943"
        "eacce55bb3.slice/cri-containerd-c203a2647ef1ad78e990157c50331f3b6ef0b03336cf08535d6bf7fa"
        "a5421415.scope\n",
        "c203a2647ef1ad78e990157c50331f3b6ef0b03336cf08535d6bf7faa5421415",
        "containerd",
        "187bff14cccb94f179e943eacce55bb3",
    ),
    (
        # CRI-O, systemd driver, cgroup v2 (grafana/pyroscope#1885)
        "crio-systemd-v2",
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podb57320a0_e7eb_4ac8_a791_"
        "4c4472796867.slice/crio-0ecc7949cbaf17e883264ea1055f60b184a7cb264fd759c4a692e1155086fe2d"
        ".scope\n",
        "0ecc7949cbaf17e883264ea1055f60b184a7cb264fd759c4a692e1155086fe2d",
        "cri-o",
        "b57320a0-e7eb-4ac8-a791-4c4472796867",
    ),
    (
        # CRI-O, besteffort (openshift/microshift#697, systemd-cgls output)
        "crio-besteffort",
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc8bad552_5c99_4d4f_"
        "b71c_c426c0cde014.slice/crio-15b6e0c6490cad17fcf69eb837794349b4df96f84ba96c6be9828fe281"
        "c055a9.scope\n",
        "15b6e0c6490cad17fcf69eb837794349b4df96f84ba96c6be9828fe281c055a9",
        "cri-o",
        "c8bad552-5c99-4d4f-b71c-c426c0cde014",
    ),
    (
        # docker as the Kubernetes runtime, systemd driver, cgroup v1 (DataDog/dd-trace-py#2314)
        "docker-k8s-systemd-v1",
        "1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2d3da189_"
        "6407_48e3_9ab6_78188d75e609.slice/docker-7b8952daecf4c0e44bbcefe1b5c5ebc7b4839d4eefeccefe"
        "694709d3809b6199.scope\n",
        "7b8952daecf4c0e44bbcefe1b5c5ebc7b4839d4eefeccefe694709d3809b6199",
        "docker",
        "2d3da189-6407-48e3-9ab6-78188d75e609",
    ),
    (
        # seen from inside a cgroup namespace: relative path (grafana/pyroscope ebpf/sd tests)
        "docker-k8s-v2-relative",
        "0::/../../kubepods-besteffort-pod88f6f4e3_59c0_4ce8_9ecf_391c8b5a60ad.slice/docker-656959"
        "d9ee87a0b131c601ce9d9f8f76b1dda60e8608c503b5979d849cbdc714.scope\n",
        "656959d9ee87a0b131c601ce9d9f8f76b1dda60e8608c503b5979d849cbdc714",
        "docker",
        "88f6f4e3-59c0-4ce8-9ecf-391c8b5a60ad",
    ),
    (
        # cgroupfs driver, cgroup v1: runtime not in the path (grafana/pyroscope ebpf/sd tests)
        "cgroupfs-besteffort-v1",
        "11:devices:/kubepods/besteffort/pod85adbef3-622f-4ef2-8f60-a8bdf3eb6c72/7edda1de1e0d1d36"
        "6351e478359cf5fa16bb8ab53063a99bb119e56971bfb7e2\n",
        "7edda1de1e0d1d366351e478359cf5fa16bb8ab53063a99bb119e56971bfb7e2",
        None,
        "85adbef3-622f-4ef2-8f60-a8bdf3eb6c72",
    ),
    (
        # cgroupfs driver, guaranteed QoS has no class directory (a Rust cgroup parser's tests)
        "cgroupfs-guaranteed-v1",
        "6:cpu,cpuacct:/kubepods/pod5b977639-f878-469b-94ee-47a4aa7e597a/dd55abbabd99bcb4d2ce17ff"
        "a77d6f811c90e09202f537c273962a8259cac8a0\n",
        "dd55abbabd99bcb4d2ce17ffa77d6f811c90e09202f537c273962a8259cac8a0",
        None,
        "5b977639-f878-469b-94ee-47a4aa7e597a",
    ),
    (
        # GKE static pod, cgroupfs (grafana/beyla#588)
        "cgroupfs-static-pod",
        "4:memory:/kubepods/burstable/podb53dfa9e2dc9b890f7fadb2770857b03/bb959773d06ad1a07d469bc"
        "ed637bbc49b6f8573c493fd0548d7f5810eb3e5a8\n",
        "bb959773d06ad1a07d469bced637bbc49b6f8573c493fd0548d7f5810eb3e5a8",
        None,
        "b53dfa9e2dc9b890f7fadb2770857b03",
    ),
    (
        # plain docker, systemd driver, cgroup v2 (a C++ proc reader's tests)
        "docker-systemd-v2",
        "0::/system.slice/docker-a1e311027d69c40fe0520f086f7b85bcc62f31ac97b47f1b03d68b494f432b50"
        ".scope\n",
        "a1e311027d69c40fe0520f086f7b85bcc62f31ac97b47f1b03d68b494f432b50",
        "docker",
        None,
    ),
    (
        # plain docker, systemd driver, cgroup v1 on CentOS (neuvector/neuvector tests)
        "docker-systemd-v1-multiline",
        "\n".join(
            f"{n}:{c}:/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056"
            "cd4422cf3d.scope"
            for n, c in [(10, "devices"), (8, "memory"), (2, "cpuacct,cpu")]
        )
        + "\n1:name=systemd:/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a337"
        "8375056cd4422cf3d.scope\n",
        "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d",
        "docker",
        None,
    ),
    (
        # hybrid host: docker only in the v1 hierarchies, 0:: shows containerd.service
        # (ctrsploit/ctrsploit#280)
        "docker-cgroupfs-hybrid",
        "12:net_cls,net_prio:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00"
        "dd303d\n10:rdma:/\n8:memory:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33"
        "ea7f00dd303d\n1:name=systemd:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f"
        "33ea7f00dd303d\n0::/system.slice/containerd.service\n",
        "2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d",
        "docker",
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "container_id", "runtime", "pod_uid"),
    [c[1:] for c in CONTAINERS],
    ids=[c[0] for c in CONTAINERS],
)
def test_container_paths_of_every_runtime_and_driver(text, container_id, runtime, pod_uid):
    info = container_info(text)
    assert info.container_id == container_id
    assert info.runtime == runtime
    assert info.pod_uid == pod_uid
    # a container is never labelled with the unit of the runtime that spawned it
    assert info.systemd_unit is None
    assert container_id in info.path or container_id in text


def test_crio_conmon_is_the_runtime_not_the_container():
    # GIVEN conmon's scope beside the container it monitors (opencontainers/runc#4620)
    text = (
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod207aaad1_659f_4db8_88e0_"
        "46e0cdcc3004.slice/crio-conmon-32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b"
        "6224a6.scope\n"
    )
    info = container_info(text)
    # THEN no container ID: --only-services must drop it, as it drops containerd and runc
    assert info.container_id is None
    assert info.pod_uid == "207aaad1-659f-4db8-88e0-46e0cdcc3004"
    # and outside the pod slice (conmon_cgroup = system.slice, microshift before #697)
    outside = container_info(
        "0::/system.slice/crio-conmon-e0c85fe7644a858988d9687c2e0736a7d31922740d0f3e001c6b2e0aa7e5"
        "f528.scope\n"
    )
    assert outside == CgroupInfo("/system.slice/crio-conmon-e0c85fe7644a858988d9687c2e0736a7d3192"
                                 "2740d0f3e001c6b2e0aa7e5f528.scope")


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("0::/system.slice/nginx.service\n", "nginx.service"),
        # a service's own sub-cgroup (Delegate=yes)
        ("0::/system.slice/containerd.service/runtime\n", "containerd.service"),
        ("0::/system.slice/kubelet.service\n", "kubelet.service"),
        # a user unit: the innermost .service wins over user@UID.service
        (
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service\n",
            "pipewire.service",
        ),
        # v1: the name=systemd line carries the unit
        (
            "11:memory:/system.slice/sshd.service\n1:name=systemd:/system.slice/sshd.service\n",
            "sshd.service",
        ),
    ],
)
def test_systemd_units_of_plain_host_processes(text, unit):
    info = container_info(text)
    assert info.systemd_unit == unit
    assert info.container_id is None
    assert info.pod_uid is None


@pytest.mark.parametrize(
    "text",
    [
        # a login session (grafana/pyroscope ebpf/sd tests): a scope, not a service
        "0::/../../user.slice/user-501.slice/session-3.scope\n",
        # the test machine itself: hybrid, a 32-hex memory cgroup that is no container ID
        "9:name=systemd:/\n4:memory:/process_api/16ce29fc9e492b37db9ac2cca2a93b3e\n1:cpu:/\n0::/\n",
        # kernel threads and the root
        "0::/\n",
        "",
    ],
)
def test_processes_outside_containers_and_units(text):
    info = container_info(text)
    assert (info.container_id, info.runtime, info.pod_uid, info.systemd_unit) == (
        None, None, None, None)


def test_hybrid_prefers_unified_line_without_containers():
    info = container_info("4:memory:/process_api/x\n1:name=systemd:/system.slice/a.service\n"
                          "0::/system.slice/b.service\n")
    assert info.path == "/system.slice/b.service"
    assert info.systemd_unit == "b.service"


def test_path_info_innermost_container_wins():
    # docker-in-docker: the nested container is the one whose code runs
    outer = "2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d"
    inner = "a1e311027d69c40fe0520f086f7b85bcc62f31ac97b47f1b03d68b494f432b50"
    assert path_info(f"/docker/{outer}/docker/{inner}").container_id == inner


def test_path_info_rejects_ids_of_the_wrong_length():
    assert path_info("/docker/2403ccfe427f").container_id is None
    assert path_info("/system.slice/docker-" + "a" * 63 + ".scope").container_id is None


def test_read_cgroup_of_this_process_parses():
    text = read_cgroup(os.getpid())
    assert text is not None and text.strip()
    assert container_info(text).path.startswith("/")


def test_read_cgroup_of_a_missing_process(tmp_path):
    assert read_cgroup(12345, proc_root=str(tmp_path)) is None


@pytest.mark.parametrize(
    ("cri", "expected"),
    [
        ("containerd://a534eb62", ("containerd", "a534eb62")),
        ("cri-o://9ba4b113", ("cri-o", "9ba4b113")),
        ("docker://7edda1de", ("docker", "7edda1de")),
        ("7edda1de", (None, "7edda1de")),
    ],
)
def test_split_cri_container_id(cri, expected):
    assert split_cri_container_id(cri) == expected
