"""Tokens and passwords never reach logs, errors, spool files or repr()."""

from __future__ import annotations

import logging

from tests.receiver import Receiver
from uploader.client import IngestClient, Outcome
from uploader.delivery import Deliverer
from uploader.options import RetryPolicy, UploadOptions
from uploader.prepare import build_requests
from uploader.spool import Spool
from uploader.windows import Window

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
        (r,) = build_requests(Window(10**18, 10**18 + 10**10, 100, {}, {"c;f": 1}), o)
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
