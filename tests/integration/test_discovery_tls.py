"""discovery's in-cluster configuration over HTTPS, with a test CA made by openssl (skips
without it)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from discovery.discovery import Discovery, DiscoveryOptions
from tests.helpers.kube_api import (
    APP_CID,
    APP_UID,
    NODE,
    TOKEN,
    FakeApi,
    scope,
    serve,
)


@pytest.fixture
def tls_api(tmp_path) -> Iterator[tuple[FakeApi, str]]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test CA")
    key, crt = tmp_path / "key.pem", tmp_path / "crt.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(crt), "-subj", "/CN=kubernetes",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    server = FakeApi()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    yield from ((s, str(crt)) for s in serve(server))


def test_in_cluster_service_account_over_tls(tls_api, tmp_path):
    server, ca = tls_api
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    shutil.copy(ca, sa / "ca.crt")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
           "KUBERNETES_SERVICE_PORT": str(server.server_address[1])}
    warned: list[str] = []
    d = Discovery(DiscoveryOptions(kubernetes_node=NODE, service_account_dir=str(sa)),
                  environ=env, warn=warned.append)
    labels = d.labels_for(scope(APP_UID, APP_CID))
    assert warned == []
    assert labels is not None and labels["service_name"] == "shop-checkout"
    assert server.requests[0]["authorization"] == f"bearer {TOKEN}"


def test_in_cluster_with_a_wrong_ca_is_unreachable(tls_api, tmp_path):
    server, _ = tls_api
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    other_key, other_crt = tmp_path / "k2.pem", tmp_path / "c2.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(other_key), "-out", str(other_crt), "-subj", "/CN=other"],
                   check=True, capture_output=True)
    shutil.copy(other_crt, sa / "ca.crt")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
           "KUBERNETES_SERVICE_PORT": str(server.server_address[1])}
    warned: list[str] = []
    d = Discovery(DiscoveryOptions(kubernetes_node=NODE, service_account_dir=str(sa)),
                  environ=env, warn=warned.append)
    d.start()
    assert len(warned) == 1 and "cannot reach the API server" in warned[0]
    assert "certificate" in warned[0].lower()
    assert server.pod_lists() == 0
