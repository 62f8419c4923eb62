"""The deployment files: parsed and checked for the fields that make the agent work.

An edit that drops hostPID, the node name, an RBAC verb, a mount or a Secret key fails here
instead of on a cluster.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
AGENT = DEPLOY / "ebpf-profiler-agent"


def manifests() -> list[dict[str, Any]]:
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(f.read_text()) if d)
    return docs


def one(kind: str) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def agent_container() -> dict[str, Any]:
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "agent")


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_every_manifest_parses_with_kind_and_name():
    docs = manifests()
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "ClusterRole",
                                         "ClusterRoleBinding", "Secret", "DaemonSet"}
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]


def test_namespace_is_applied_before_what_lives_in_it():
    # kubectl apply -f DIR goes in file-name order; a namespaced object before its Namespace
    # fails with "namespaces ... not found"
    order = [d["kind"] for f in sorted(K8S.glob("*.yaml"))
             for d in yaml.safe_load_all(f.read_text()) if d]
    assert order[0] == "Namespace"
    ns = one("Namespace")["metadata"]["name"]
    for d in manifests():
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == ns, d["kind"]


def test_daemonset_runs_in_the_host_pid_namespace_with_bpf_rights():
    ds = one("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    sc = agent_container()["securityContext"]
    caps = set(sc.get("capabilities", {}).get("add", []))
    assert sc.get("privileged") is True or {"BPF", "PERFMON"} <= caps
    assert sc.get("runAsUser", 0) == 0
    # the selector must select the template, or the API server rejects the DaemonSet
    sel = ds["spec"]["selector"]["matchLabels"]
    assert sel.items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_the_documented_capabilities_alternative_is_valid_and_sufficient():
    text = (K8S / "40-daemonset.yaml").read_text()
    m = re.search(r"# CAPABILITIES-ALTERNATIVE-BEGIN\n(.*?)\n\s*# CAPABILITIES-ALTERNATIVE-END",
                  text, re.S)
    assert m, "the commented capabilities block is gone"
    block = "\n".join(re.sub(r"^\s*# ?", "", line) for line in m.group(1).splitlines())
    sc = yaml.safe_load(block)["securityContext"]
    assert sc["privileged"] is False
    add = set(sc["capabilities"]["add"])
    assert {"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "SYSLOG"} <= add
    assert sc["seccompProfile"]["type"] == "Unconfined"


def test_node_name_comes_from_the_downward_api():
    env = env_of(agent_container())
    ref = env["PYROSCOPE_KUBERNETES_NODE"]["valueFrom"]["fieldRef"]
    assert ref["fieldPath"] == "spec.nodeName"
    assert env["PYROSCOPE_ONLY_SERVICES"]["value"] in ("true", "false")


def test_rbac_lets_the_service_account_get_list_watch_pods():
    role = one("ClusterRole")
    rule = next(r for r in role["rules"] if "pods" in r["resources"])
    assert rule["apiGroups"] == [""]
    assert set(rule["verbs"]) >= {"get", "list", "watch"}
    # read-only: nothing that writes
    for r in role["rules"]:
        assert not set(r["verbs"]) & {"create", "update", "patch", "delete", "*"}
    binding = one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role["metadata"]["name"]}
    sa = one("ServiceAccount")
    assert {"kind": "ServiceAccount", "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"]} in binding["subjects"]
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert sa.get("automountServiceAccountToken", True) is not False
    assert pod.get("automountServiceAccountToken", True) is not False


def test_secret_refs_resolve_to_keys_of_the_secret():
    secret = one("Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    env = env_of(agent_container())
    refs = [e["valueFrom"]["secretKeyRef"] for e in env.values()
            if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs, "no settings come from the Secret"
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in keys
    # the server address is required; credentials are there to fill in, and never inline
    assert not env["PYROSCOPE_SERVER_ADDRESS"]["valueFrom"]["secretKeyRef"].get("optional")
    for name in ("PYROSCOPE_AUTH_TOKEN", "PYROSCOPE_BASIC_AUTH_PASSWORD"):
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"]


def test_every_mount_has_a_volume_and_every_volume_is_mounted():
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in agent_container()["volumeMounts"]}
    assert set(mounts) == set(volumes)
    paths = {v["hostPath"]["path"]: mounts[n]["mountPath"]
             for n, v in volumes.items() if "hostPath" in v}
    # tracepoints through debugfs; the node's kernel headers, beside the image's (see agent)
    assert paths["/sys/kernel/debug"] == "/sys/kernel/debug"
    assert paths["/lib/modules"] == "/host/lib/modules"
    assert paths["/usr/src"] == "/host/usr/src"
    assert mounts["host-modules"]["readOnly"] and mounts["host-usr-src"]["readOnly"]
    # the agent script links exactly the /host paths the DaemonSet mounts
    script = AGENT.read_text()
    assert "/host/lib/modules" in script and "/host/usr/src" in script
    # the spool directory the uploader is told to use sits on a volume
    spool = env_of(agent_container())["PYROSCOPE_SPOOL_DIR"]["value"]
    assert any(spool.startswith(m["mountPath"]) for m in mounts.values())


def test_resources_have_requests_and_limits():
    res = agent_container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res[kind])


def test_daemonset_runs_the_agent_script_that_the_image_installs():
    cmd = agent_container()["command"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"COPY deploy/ebpf-profiler-agent {cmd[0]}" in dockerfile
    assert os.access(AGENT, os.X_OK)
    script = AGENT.read_text()
    assert "set -uo pipefail" in script
    assert re.search(r"ebpf-record --out - .*\n\s*\| ebpf-symbolize - .*\n\s*\| ebpf-upload -",
                     script)
    subprocess.run(["bash", "-n", str(AGENT)], check=True)


def test_dockerfile_base_packages_and_sources():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:bookworm", text, re.M)
    for pkg in ("python3-bpfcc", "linux-headers-amd64", "python3-venv"):
        assert pkg in text
    # every package setuptools installs is copied into the image, and the BPF source with it
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    for pattern in include:
        pkg = pattern.rstrip("*")
        assert re.search(rf"^COPY {pkg} \./{pkg}$", text, re.M), pkg
    assert re.search(r"^COPY bpf \./bpf$", text, re.M)
    assert "EBPF_PROFILER_BPF_DIR=/opt/ebpf-profiler/bpf" in text
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / src).exists(), src


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(DEPLOY / "systemd" / "ebpf-profiler.service")
    return cp


def test_systemd_unit_starts_restarts_and_stops_cleanly():
    unit = _unit()
    svc = unit["Service"]
    assert svc["ExecStart"].split()[0] == "/usr/local/bin/ebpf-profiler-agent"
    assert svc["Restart"] in ("on-failure", "always")
    assert svc["EnvironmentFile"].lstrip("-") == "/etc/ebpf-profiler.env"
    # only the script gets SIGTERM; it forwards it to the pipeline
    assert svc["KillMode"] == "mixed"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    env = (DEPLOY / "systemd" / "ebpf-profiler.env").read_text()
    assert re.search(r"^PYROSCOPE_SERVER_ADDRESS=\S+", env, re.M)


# --- the agent script, with stand-ins for the three commands ----------------------------------

STUBS = {
    # records until SIGTERM, then closes its last window
    "ebpf-record": "#!/bin/sh\ntrap 'echo final; exit 0' TERM\n"
                   "[ -n \"${STUB_RECORD_FAIL:-}\" ] && exit 3\n"
                   "while :; do echo \"window $*\"; sleep 0.05; done\n",
    # like the real ones: on SIGTERM, keep going until upstream's EOF
    "ebpf-symbolize": "#!/bin/sh\ntrap '' TERM\nexec cat\n",
    "ebpf-upload": "#!/bin/sh\ntrap '' TERM\n[ -n \"${STUB_UPLOAD_FAIL:-}\" ] && exit 6\n"
                   "exec cat > \"$STUB_OUT\"\n",
}


def _agent(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    out = tmp_path / "uploaded"
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_OUT": str(out),
                **env}
    # its own session, as PID 1 of a container or a systemd service has: the script signals
    # its process group
    proc = subprocess.Popen(["bash", str(AGENT)], env=full_env, start_new_session=True)
    return proc, out


def test_agent_forwards_sigterm_and_the_last_window_is_uploaded(tmp_path):
    proc, out = _agent(tmp_path, EBPF_RECORD_ARGS="--sample-rate 49")
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text().count("window") >= 2):
        assert proc.poll() is None, "the agent ended before it was stopped"
        assert time.monotonic() < deadline, "nothing reached the uploader"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    lines = out.read_text().splitlines()
    assert lines[-1] == "final"
    assert lines[0] == "window --out - --sample-rate 49"


@pytest.mark.parametrize(("env", "code"), [({"STUB_RECORD_FAIL": "1"}, 3),
                                           ({"STUB_UPLOAD_FAIL": "1"}, 6)])
def test_agent_fails_when_any_stage_fails(tmp_path, env, code):
    proc, _ = _agent(tmp_path, **env)
    assert proc.wait(timeout=30) == code
