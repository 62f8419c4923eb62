"""Tokens and passwords never reach logs, errors, spool files or repr()."""

from __future__ import annotations

import base64
import logging
import os
import subprocess

import pytest

from tests.conftest import tool
from tests.helpers.profiles import profile
from tests.receiver import Receiver
from uploader.client import IngestClient, Outcome
from uploader.credentials import RedactingFilter, Redactor
from uploader.delivery import Deliverer
from uploader.options import RetryPolicy, UploadOptions
from uploader.prepare import build_requests
from uploader.spool import Spool

TOKEN = "tok-SECRET-4242"
PASSWORD = "pw-SECRET-9999"
HEADER_KEY = "hdr-SECRET-7777"


def test_no_secret_in_repr_logs_errors_or_spool(tmp_path, caplog):
    with Receiver(auth_token="the-right-one") as rx:
        o = UploadOptions(application_name="s", server_address=rx.url, auth_token=TOKEN,
                          basic_auth_user="u", basic_auth_password=PASSWORD,
                          headers=(("X-API-Key", HEADER_KEY),), spool_dir=tmp_path,
                          retry=RetryPolicy(attempts=2, base_s=0.001, max_s=0.002))
        assert TOKEN not in repr(o) and PASSWORD not in repr(o) and HEADER_KEY not in repr(o)
        client = IngestClient(o)
        spool = Spool(tmp_path, 10**6, o.server_address, None)
        d = Deliverer(client, spool, o.retry)
        (r,) = build_requests(profile({"c;f": 1}, 10**9, 10**9 + 10), o)
        errors = []
        with caplog.at_level(logging.DEBUG, logger="ebpf-upload"):
            # 401 from a wrong token, then the server gone: both paths log and spool
            try:
                d.deliver(r)
            except Exception as exc:
                errors.append(str(exc))
            rx.down()
            d.deliver(r)
            result = client.send(r)
            assert result.outcome is Outcome.RETRY
            errors.append(result.message)
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert stored, "expected spooled requests"
    assert b"a.cpu" not in stored and b"s.cpu" in stored  # sanity: we read the right files
    for secret in (TOKEN, PASSWORD, HEADER_KEY):
        assert secret.encode() not in stored
        assert secret not in caplog.text
        assert all(secret not in e for e in errors)
    assert any("401" in e for e in errors)


def test_server_echoing_a_secret_is_redacted():
    o = UploadOptions(application_name="s", auth_token=TOKEN)
    assert IngestClient(o).redact(f"bad token {TOKEN}") == "bad token ***"


# --- secrets as users give them (issue 8, item 5) -------------------------------------------

def upload(rx: Receiver, tmp_path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess:
    """`ebpf-upload FILE` of one plain folded stack, as a user runs it."""
    folded = tmp_path / "in.folded"
    folded.write_text("main;work 5\n")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYROSCOPE_")}
    full_env.update(env or {})
    return subprocess.run([tool("ebpf-upload"), str(folded), "--application-name", "sec",
                           "--server-address", rx.url, "--spool-dir", str(tmp_path / "spool"),
                           "--retries", "1", *args],
                          env=full_env, capture_output=True, text=True, timeout=60)


def spooled(tmp_path) -> list:
    return list((tmp_path / "spool").rglob("*.req"))


def test_token_with_trailing_newline_is_stripped_and_delivered(tmp_path):
    # GIVEN a token read from a file-based Kubernetes secret (it ends in a newline)
    with Receiver(auth_token=TOKEN) as rx:
        r = upload(rx, tmp_path, env={"PYROSCOPE_AUTH_TOKEN": TOKEN + "\n"})
        # THEN it is delivered with the token as meant, nothing spooled, nothing printed
        assert r.returncode == 0, r.stderr
        assert len(rx.ingests) == 1 and not spooled(tmp_path)
    assert TOKEN not in r.stderr and "cannot reach" not in r.stderr


def test_basic_auth_and_header_values_are_stripped(tmp_path):
    with Receiver(basic_auth=("user", PASSWORD)) as rx:
        r = upload(rx, tmp_path, "--header", f"X-API-Key= {HEADER_KEY}\r\n",
                   env={"PYROSCOPE_BASIC_AUTH_USER": "user\n",
                        "PYROSCOPE_BASIC_AUTH_PASSWORD": PASSWORD + "\n"})
        assert r.returncode == 0, r.stderr
        (ing,) = rx.ingests
        assert ing.headers["x-api-key"] == HEADER_KEY


@pytest.mark.parametrize(("where", "value", "named"), [
    ("env", "tok-SECRET\x01-4242", "PYROSCOPE_AUTH_TOKEN"),
    ("env", "tok-SECRET-€4242", "PYROSCOPE_AUTH_TOKEN"),
    ("flag", "tok-SECRET-€4242", "--auth-token"),
    ("header", "tok-SECRET\x1b-4242", "--header X-API-Key"),
    ("header", "tok-SECRET-€4242", "--header X-API-Key"),
])
def test_token_with_a_bad_character_is_a_one_line_usage_error(tmp_path, where, value, named):
    with Receiver() as rx:
        if where == "env":
            r = upload(rx, tmp_path, env={"PYROSCOPE_AUTH_TOKEN": value})
        elif where == "flag":
            r = upload(rx, tmp_path, "--auth-token", value)
        else:
            r = upload(rx, tmp_path, "--header", f"X-API-Key={value}")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ebpf-upload: error:"), r.stderr
        assert named in lines[0]
        assert "SECRET" not in r.stderr and "4242" not in r.stderr
        assert not rx.log and not spooled(tmp_path)


def test_header_in_curl_form_is_refused_without_showing_it(tmp_path):
    with Receiver() as rx:
        r = upload(rx, tmp_path, "--header", f"X-API-Key: {HEADER_KEY}")
    assert r.returncode == 2 and HEADER_KEY not in r.stderr
    assert "--header" in r.stderr and "Name=value" in r.stderr


def test_every_form_of_a_secret_is_redacted():
    o = UploadOptions(application_name="s", auth_token=TOKEN, basic_auth_user="user",
                      basic_auth_password=PASSWORD, headers=(("X-API-Key", HEADER_KEY),
                                                             ("X-Short", "k7")))
    redact = IngestClient(o).redact
    b64 = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    texts = [f"Authorization: 'Bearer {TOKEN}'", repr({"Authorization": f"Bearer {TOKEN}"}),
             f"Basic {b64}", repr(f"{PASSWORD}\n"), f"X-API-Key={HEADER_KEY!r}",
             "value k7 refused"]
    for text in texts:
        out = redact(text)
        assert "***" in out, text
        for s in (TOKEN, PASSWORD, b64, HEADER_KEY, " k7 "):
            assert s not in out, (text, out)
    # a short secret is redacted as a word only, not inside other words
    assert redact("kk7x k7") == "kk7x ***"


def test_log_filter_redacts_messages_built_from_arguments(caplog):
    log = logging.getLogger("ebpf-upload")
    guard = RedactingFilter(Redactor([TOKEN]))
    log.addFilter(guard)
    try:
        with caplog.at_level(logging.INFO, logger="ebpf-upload"):
            log.warning("header %r refused", f"Bearer {TOKEN}\n")
    finally:
        log.removeFilter(guard)
    assert TOKEN not in caplog.text and "Bearer ***" in caplog.text


def test_unsendable_header_is_a_configuration_error_not_cannot_reach():
    # options built without resolve() (which strips and checks): still one line, no value,
    # and not retried as if the server were down
    for o in (UploadOptions(application_name="s", auth_token=TOKEN + "\n"),
              UploadOptions(application_name="s", headers=(("X-API-Key", HEADER_KEY + "€"),))):
        with Receiver() as rx:
            o = UploadOptions(**{**o.__dict__, "server_address": rx.url})
            (r,) = build_requests(profile({"c;f": 1}, 10**9, 10**9 + 10), o)
            result = IngestClient(o).send(r)
            assert not rx.seen
        assert result.outcome is Outcome.AUTH and "cannot reach" not in result.message
        assert TOKEN not in result.message and HEADER_KEY not in result.message


def test_spooled_run_with_a_newline_token_leaves_no_form_of_it_anywhere(tmp_path):
    with Receiver() as rx:
        rx.down()  # everything goes to the spool
        r = upload(rx, tmp_path, env={"PYROSCOPE_AUTH_TOKEN": TOKEN + "\n",
                                      "PYROSCOPE_BASIC_AUTH_USER": "user",
                                      "PYROSCOPE_BASIC_AUTH_PASSWORD": PASSWORD + "\n"})
    assert r.returncode == 6 and spooled(tmp_path)
    b64 = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "spool").rglob("*") if p.is_file())
    for form in (TOKEN, PASSWORD, b64, repr(TOKEN + "\n")):
        assert form not in r.stderr and form.encode() not in stored
