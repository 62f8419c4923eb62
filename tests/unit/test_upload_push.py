"""`ebpf-upload --protocol push`: requests as the real pyroscope-io 1.x client sends them, and
the Connect errors of the push API mapped to the delivery decisions of /ingest's statuses.

The reference is a request of pyroscope-io 1.4.0 captured on a local HTTP server
(tests/receiver/captured/: the file says how; capture_pyroscope_io.py re-captures it).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import time
import uuid
from pathlib import Path

import pytest
import requests

from profiles.pb import profile_pb2
from recording.errors import DeliveryError, UsageError
from tests.helpers.profiles import profile
from tests.receiver import Receiver
from uploader.client import IngestClient, IngestRequest, Outcome
from uploader.options import RetryPolicy, UploadOptions, options_for
from uploader.pb import push_pb2
from uploader.prepare import build_requests
from uploader.session import Session
from uploader.spool import Spool

CAPTURED = Path(__file__).parents[1] / "receiver" / "captured" / "pyroscope-io-1.4.0-push.json"
FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05)
STACKS = {"workload;main;run_rounds;alpha": 25, "workload;main;run_rounds;lib_beta": 50,
          "kworker;[unknown]": 3}


def _captured() -> tuple[str, dict[str, str], bytes]:
    data = json.loads(CAPTURED.read_text())
    return data["path"], {k.lower(): v for k, v in data["headers"]}, base64.b64decode(
        data["body_b64"])


def _push_request(body: bytes, headers: dict[str, str]) -> push_pb2.PushRequest:
    assert headers.get("content-encoding") == "gzip"
    req = push_pb2.PushRequest()
    req.ParseFromString(gzip.decompress(body))
    return req


def _pprof(raw: bytes) -> profile_pb2.Profile:
    p = profile_pb2.Profile()
    p.ParseFromString(raw)
    return p


def _now_window() -> tuple[int, int]:
    start = (int(time.time()) // 10 - 1) * 10
    return start, start + 10


def _opts(rx: Receiver, tmp_path, **kw) -> UploadOptions:
    kw.setdefault("retry", FAST)
    return UploadOptions(application_name=kw.pop("app", "capture.app"),
                         server_address=rx.url, spool_dir=tmp_path / "spool",
                         protocol="push", format="pprof", **kw)


def test_request_matches_the_real_clients_fields_headers_and_encodings(tmp_path):
    # GIVEN what pyroscope-io 1.4.0 sent with these settings
    path, theirs_h, theirs_body = _captured()
    theirs = _push_request(theirs_body, theirs_h)
    # WHEN ebpf-upload sends a window with the same settings
    with Receiver(basic_auth=("user1", "pass1"), require_tenant=True) as rx:
        s = Session(_opts(rx, tmp_path, basic_auth_user="user1", basic_auth_password="pass1",
                          tenant_id="tenant-a", tags=(("env", "test"), ("region", "eu"))))
        s.send_window(profile(STACKS, *_now_window()))
        assert [st for st, _ in rx.log] == [200]
        method, our_path, ours_h = rx.seen[-1]
        (ing,) = rx.ingests
    # THEN the route, the headers that matter and their values are the client's
    assert (method, our_path) == ("POST", path)
    for h in ("content-type", "content-encoding", "authorization", "x-scope-orgid"):
        assert ours_h.get(h) == theirs_h[h], h
    assert "connect-protocol-version" not in theirs_h  # neither sends it
    # ... one series, whose labels start as theirs do (theirs add otel.* and process.*)
    (their_series,) = theirs.series
    their_labels = [(lp.name, lp.value) for lp in their_series.labels]
    assert list(ing.series_labels) == their_labels[:4] == [
        ("__name__", "process_cpu"), ("env", "test"), ("region", "eu"),
        ("service_name", "capture.app")]
    # ... one sample, a UUID as ID, its pprof not compressed a second time
    (their_sample,) = their_series.samples
    for sid in (their_sample.ID, ing.sample_id):
        assert uuid.UUID(sid).version == 4
    assert their_sample.raw_profile[:2] != b"\x1f\x8b" and ing.body[:2] != b"\x1f\x8b"
    # ... and a CPU pprof of the same period and time units
    mine, their_p = _pprof(ing.body), _pprof(their_sample.raw_profile)
    for p in (mine, their_p):
        st = p.string_table
        assert (st[p.period_type.type], st[p.period_type.unit], p.period) == (
            "cpu", "nanoseconds", 10_000_000)
        assert ("cpu", "nanoseconds") in [(st[t.type], st[t.unit]) for t in p.sample_type]
        assert p.time_nanos > 0 and p.duration_nanos > 0
    assert ing.stacks == STACKS


def test_receiver_accepts_the_real_clients_request():
    path, headers, body = _captured()
    with Receiver(basic_auth=("user1", "pass1"), check_age=False) as rx:
        r = requests.post(rx.url + path, data=body, headers={
            k: v for k, v in headers.items() if k not in ("host", "content-length")},
            timeout=10)
        assert r.status_code == 200, r.text
        (ing,) = rx.ingests
    assert ing.app == "capture.app" and ing.profile_type == "process_cpu"
    assert ing.labels["env"] == "test" and ing.tenant == "tenant-a"
    assert ing.total > 0 and ing.sample_rate == 100


def test_pprof_in_a_push_keeps_mappings_and_build_ids(tmp_path):
    from tests.helpers.sinks import EXE_BID, LIB_BID, first_window

    w = first_window()
    w.start_ns, w.end_ns = (t * 1_000_000_000 for t in _now_window())
    with Receiver() as rx:
        Session(_opts(rx, tmp_path)).send_window(w)
        (ing,) = rx.ingests
    p = _pprof(ing.body)
    assert {p.string_table[m.build_id] for m in p.mapping} >= {EXE_BID, LIB_BID}
    assert all(loc.address and loc.mapping_id for loc in p.location
               if p.string_table[p.mapping[loc.mapping_id - 1].filename].startswith("/"))
    assert ing.labels["pid"] == "4242"  # the window's labels are series labels


@pytest.mark.parametrize(("code", "message", "advice"), [
    ("invalid_argument", "profile is outside the ingestion window (not_in_ingestion_window)",
     "--retime"),
    ("invalid_argument", "invalid label name", "check --application-name, --tag"),
])
def test_invalid_argument_stops_and_sets_the_window_aside(tmp_path, code, message, advice):
    with Receiver() as rx:
        rx.fail_connect(code, message=message)
        s = Session(_opts(rx, tmp_path))
        with pytest.raises(DeliveryError) as exc:
            s.send_window(profile(STACKS, *_now_window()))
    text = str(exc.value)
    assert "server answered 400 (invalid_argument" in text and advice in text
    assert [st for st, _ in rx.log] == [400]  # not retried
    assert len(s.spool) == 0 and len(list((s.spool.dir / "rejected").glob("*.req"))) == 1


def test_the_receivers_own_ingestion_window_check_gives_the_retime_advice(tmp_path):
    with Receiver() as rx:
        s = Session(_opts(rx, tmp_path, allow_old=True))
        with pytest.raises(DeliveryError, match="--retime"):
            s.send_window(profile(STACKS, 1000, 1010))  # 1970: far outside the window
        assert rx.log[-1][0] == 400 and "not_in_ingestion_window" in rx.log[-1][1]


@pytest.mark.parametrize("code", ["unauthenticated", "permission_denied"])
def test_auth_errors_stop_and_keep_the_window_in_the_spool(tmp_path, code):
    with Receiver() as rx:
        rx.fail_connect(code)
        s = Session(_opts(rx, tmp_path))
        with pytest.raises(DeliveryError, match=f"server answered \\d+ \\({code}") as exc:
            s.send_window(profile(STACKS, *_now_window()))
    assert "kept in the spool" in str(exc.value)
    assert [st for st, _ in rx.log] == [401 if code == "unauthenticated" else 403]
    assert len(s.spool) == 1


def test_wrong_credentials_are_unauthenticated_on_the_push_api(tmp_path):
    with Receiver(basic_auth=("user1", "pass1")) as rx:
        s = Session(_opts(rx, tmp_path, basic_auth_user="user1", basic_auth_password="nope"))
        with pytest.raises(DeliveryError, match=r"401 \(unauthenticated: invalid credentials"):
            s.send_window(profile(STACKS, *_now_window()))


@pytest.mark.parametrize("code", ["resource_exhausted", "unavailable"])
def test_retryable_codes_are_retried_then_delivered(tmp_path, code):
    with Receiver() as rx:
        rx.fail_connect(code, times=2)
        s = Session(_opts(rx, tmp_path))
        s.send_window(profile(STACKS, *_now_window()))
        assert [st for st, _ in rx.log][-1] == 200 and len(rx.log) == 3
        assert len(rx.ingests) == 1 and len(s.spool) == 0
        # a retried request is the same request: same sample ID each time
        assert len({i.sample_id for i in rx.ingests}) == 1


def test_resource_exhausted_honours_retry_after(tmp_path, monkeypatch):
    waits: list[float] = []
    with Receiver() as rx:
        rx.fail_connect("resource_exhausted", headers={"Retry-After": "0.2"})
        s = Session(_opts(rx, tmp_path))
        orig = s.deliverer.abort.wait
        monkeypatch.setattr(s.deliverer.abort, "wait",
                            lambda t: waits.append(t) or orig(0))
        s.send_window(profile(STACKS, *_now_window()))
    assert waits and waits[0] >= 0.2


def test_retries_exhausted_go_to_the_spool_and_are_sent_as_push_later(tmp_path):
    with Receiver() as rx:
        rx.fail_connect("unavailable", times=FAST.attempts)
        s = Session(_opts(rx, tmp_path))
        s.send_window(profile(STACKS, *_now_window()))
        assert len(s.spool) == 1 and not rx.ingests
        _, req = s.spool.oldest()  # type: ignore[misc]
        assert req.protocol == "push" and req.content_type == "application/proto"
        s.deliverer.drain_spool()
        assert len(s.spool) == 0 and [i.format for i in rx.ingests] == ["push"]
        assert rx.seen[-1][1] == "/push.v1.PusherService/Push"


def test_a_server_without_the_push_api_is_a_configuration_error(tmp_path):
    o = UploadOptions(application_name="a", protocol="push", format="pprof")
    (req,) = build_requests(profile(STACKS, *_now_window()), o)
    with Receiver() as rx:
        rx.fail_connect("not_found")
        client = IngestClient(UploadOptions(application_name="a", server_address=rx.url))
        result = client.send(req)
    assert result.outcome is Outcome.AUTH and "--protocol ingest" in result.message
    # a legacy server's plain-text 404 (no Connect body) is read the same way
    resp = requests.Response()
    resp.status_code, resp._content = 404, b"404 page not found\n"
    got = client._connect_result(resp)
    assert got is not None and got.outcome is Outcome.AUTH
    assert "--protocol ingest" in got.message


def test_ingest_stays_the_default_and_its_requests_are_unchanged(tmp_path):
    with Receiver() as rx:
        s = Session(UploadOptions(application_name="a", server_address=rx.url,
                                  spool_dir=tmp_path / "spool", retry=FAST))
        s.send_window(profile(STACKS, *_now_window()))
        assert rx.seen[-1][1].startswith("/ingest?") and rx.ingests[0].format == "folded"


def test_spool_keeps_the_protocol_and_reads_old_files_as_ingest(tmp_path):
    sp = Spool(tmp_path, 1 << 20, "http://x", None)
    sp.put(IngestRequest((("name", "a.cpu{}"), ("from", "1"), ("until", "2")), b"body",
                         "application/proto", "push"))
    (tmp_path / sp.dir.name / "000000000099.req").write_bytes(
        json.dumps({"params": [["name", "b.cpu{}"]]}).encode() + b"\nx y 1\n")
    got = [sp.read(p) for p in sp.files()]
    assert [(r.protocol, r.content_type) for r in got if r] == [
        ("push", "application/proto"), ("ingest", "binary/octet-stream")]


def _resolve(argv, env=None):
    # click reads the twins from os.environ: only these, not the shell's that ran pytest
    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("PYROSCOPE_")]:
            mp.delenv(k)
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        return options_for(argv)


def test_protocol_option_and_its_environment_twin(caplog):
    caplog.set_level(logging.ERROR)
    assert _resolve(["--application-name", "a"]).protocol == "ingest"
    o = _resolve(["--application-name", "a"], {"PYROSCOPE_PROTOCOL": "push"})
    assert (o.protocol, o.format) == ("push", "pprof")
    assert _resolve(["--application-name", "a", "--protocol", "ingest"],
                    {"PYROSCOPE_PROTOCOL": "push"}).protocol == "ingest"
    with pytest.raises(UsageError, match="choose ingest or push"):
        _resolve(["--application-name", "a", "--protocol", "grpc"])
    with pytest.raises(UsageError, match="--protocol push sends pprof"):
        _resolve(["--application-name", "a", "--protocol", "push", "--format", "folded"])
