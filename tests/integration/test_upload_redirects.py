"""Redirects from the server: credentials and custom headers never follow one to another
origin (issue 8, item 7). Two receivers on different loopback ports are two origins."""

from __future__ import annotations

import subprocess
import time

import pytest

from profiles.model import Profile
from recording.errors import DeliveryError
from tests.conftest import tool
from tests.helpers.profiles import profile
from tests.receiver import Receiver
from uploader.client import same_origin
from uploader.options import RetryPolicy, UploadOptions
from uploader.session import Session

S = 1_000_000_000
KEY = "hdr-SECRET-5150"


def window() -> Profile:
    base = (int(time.time()) // 10 - 2) * 10
    return profile({"w;main;work": 7}, base, base + 10)


def session(rx: Receiver, tmp_path) -> Session:
    return Session(UploadOptions(application_name="redir", server_address=rx.url,
                                 auth_token="tok-SECRET-1", tenant_id="team-a",
                                 headers=(("X-API-Key", KEY),), spool_dir=tmp_path / "spool",
                                 retry=RetryPolicy(attempts=2, base_s=0.001, max_s=0.002)))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_another_origin_is_refused_in_one_line(tmp_path, status):
    with Receiver() as server, Receiver() as elsewhere:
        server.fail(status, headers={"Location": f"{elsewhere.url}/ingest?name=redir.cpu"})
        s = session(server, tmp_path)
        with pytest.raises(DeliveryError) as err:
            s.send_window(window())
        # nothing reached the other origin: not the key, not the tenant, not the body
        assert elsewhere.seen == []
    msg = str(err.value)
    assert "\n" not in msg and f"{status}" in msg and elsewhere.url in msg
    assert "--server-address" in msg and KEY not in msg
    assert len(s.spool) == 1  # kept for the next run, once --server-address is fixed


def test_same_origin_307_is_followed_with_the_upload(tmp_path):
    with Receiver() as server:
        server.fail(307, headers={"Location": "/ingest?name=redir.cpu%7Bmoved%3D1%7D"})
        session(server, tmp_path).send_window(window())
        (ing,) = server.ingests
    assert ing.labels == {"moved": "1"} and ing.stacks == {"w;main;work": 7}
    assert ing.headers["x-api-key"] == KEY and ing.tenant == "team-a"


def test_same_origin_redirect_that_would_turn_the_post_into_a_get_is_refused(tmp_path):
    with Receiver() as server:
        server.fail(302, headers={"Location": "/elsewhere"})
        with pytest.raises(DeliveryError, match="302"):
            session(server, tmp_path).send_window(window())
        assert [m for m, _, _ in server.seen] == ["POST"]


def test_https_to_http_downgrade_counts_as_another_origin():
    assert same_origin("http://h:4040/ingest", "http://H:4040/other")
    assert same_origin("https://h/ingest", "https://h:443/x")
    assert not same_origin("https://h/ingest", "http://h/ingest")
    assert not same_origin("http://h:4040/ingest", "http://h:4041/ingest")
    assert not same_origin("http://h/ingest", "http://g/ingest")


def test_cli_names_the_redirect_target_and_exits_non_zero(tmp_path):
    folded = tmp_path / "in.folded"
    folded.write_text("main;work 5\n")
    with Receiver() as server, Receiver() as elsewhere:
        server.fail(308, headers={"Location": f"{elsewhere.url}/ingest"})
        r = subprocess.run([tool("ebpf-upload"), str(folded), "--application-name", "redir",
                            "--server-address", server.url, "--header", f"X-API-Key={KEY}",
                            "--spool-dir", str(tmp_path / "spool")],
                           capture_output=True, text=True, timeout=60)
        assert elsewhere.seen == []
    errors = [ln for ln in r.stderr.splitlines() if ": error:" in ln]
    assert r.returncode == DeliveryError.exit_code and len(errors) == 1, r.stderr
    assert f"redirecting to {elsewhere.url}/ingest (another server)" in errors[0]
    assert "Traceback" not in r.stderr and KEY not in r.stderr
