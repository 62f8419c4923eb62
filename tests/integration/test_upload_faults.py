"""Delivery against the receiver under faults: down then back, 503, 401, slow, spool full."""

from __future__ import annotations

import logging
import time

import pytest

from profiles.model import Profile
from recording.errors import DeliveryError
from tests.helpers.profiles import profile
from tests.receiver import Receiver
from uploader.options import RetryPolicy, UploadOptions
from uploader.replay import run_replay
from uploader.session import Session

S = 1_000_000_000
FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05)


def windows(n: int) -> list[Profile]:
    base = (int(time.time()) // 10 - n - 1) * 10
    return [profile({"w;main;work": 10 + i, f"w;main;only{i}": 1}, base + 10 * i,
                    base + 10 * i + 10) for i in range(n)]


def options(rx: Receiver, tmp_path, **kw) -> UploadOptions:
    kw.setdefault("retry", FAST)
    return UploadOptions(application_name="faults", server_address=rx.url,
                         spool_dir=tmp_path / "spool", **kw)


def test_server_down_then_back_loses_nothing_and_keeps_order(tmp_path):
    ws = windows(6)
    with Receiver() as rx:
        s = Session(options(rx, tmp_path))
        s.send_window(ws[0])
        rx.down()
        for w in ws[1:4]:
            s.send_window(w)  # retried, then spooled
        assert len(s.spool) == 3 and len(rx.ingests) == 1
        rx.up()
        for w in ws[4:]:
            s.send_window(w)  # spool first, then the new one
        assert len(s.spool) == 0
        froms = [int(i.from_s) for i in rx.ingests]
        assert froms == [w.start_ns // S for w in ws]
        assert sum(i.total for i in rx.ingests) == sum(w.total for w in ws)


def test_spool_left_by_an_earlier_run_is_sent_first(tmp_path):
    ws = windows(3)
    with Receiver() as rx:
        rx.down()
        first = Session(options(rx, tmp_path))
        first.send_window(ws[0])
        first.send_window(ws[1])
        del first.spool._lock  # the earlier process exits, releasing its lock
        del first
        rx.up()
        second = Session(options(rx, tmp_path))
        second.deliverer.drain_spool()  # at start-up
        second.send_window(ws[2])
        assert [int(i.from_s) for i in rx.ingests] == [w.start_ns // S for w in ws]


def test_503_then_200_is_retried_once_delivered(tmp_path):
    (w,) = windows(1)
    with Receiver() as rx:
        rx.fail(503, times=2)
        s = Session(options(rx, tmp_path))
        s.send_window(w)
        assert [st for st, _ in rx.log] == [503, 503, 200]
        assert len(rx.ingests) == 1 and len(s.spool) == 0


def test_429_honours_retry_after(tmp_path):
    (w,) = windows(1)
    with Receiver() as rx:
        rx.fail(429, headers={"Retry-After": "0.2"})
        s = Session(options(rx, tmp_path))
        s.send_window(w)
        assert [st for st, _ in rx.log] == [429, 200]


def test_401_gives_one_clear_message_and_no_retry_loop(tmp_path):
    ws = windows(2)
    with Receiver(auth_token="right") as rx:
        s = Session(options(rx, tmp_path, auth_token="wrong-token-123"))
        with pytest.raises(DeliveryError) as exc:
            s.send_window(ws[0])
        msg = str(exc.value)
        assert "401" in msg and "PYROSCOPE_AUTH_TOKEN" in msg and "--tenant-id" in msg
        assert "wrong-token-123" not in msg
        assert len(rx.log) == 1  # not retried
        assert len(s.spool) == 1  # kept for a run with the right token


def test_missing_tenant_is_401_naming_tenant(tmp_path):
    (w,) = windows(1)
    with Receiver(require_tenant=True) as rx:
        with pytest.raises(DeliveryError, match="tenant"):
            Session(options(rx, tmp_path)).send_window(w)
        Session(options(rx, tmp_path / "b", tenant_id="t1")).send_window(w)
        assert rx.ingests[-1].tenant == "t1"


@pytest.mark.parametrize("status,needle", [(400, "--application-name"), (413, "--upload-rate"),
                                           (422, "parse")])
def test_client_errors_are_not_retried_and_set_aside(tmp_path, status, needle):
    (w,) = windows(1)
    with Receiver() as rx:
        rx.fail(status)
        s = Session(options(rx, tmp_path))
        with pytest.raises(DeliveryError) as exc:
            s.send_window(w)
        assert str(status) in str(exc.value) and needle in str(exc.value)
        assert len(rx.log) == 1 and len(s.spool) == 0
        assert list((s.spool.dir / "rejected").iterdir())


def test_slow_server_past_the_timeout_is_retried_then_spooled(tmp_path):
    ws = windows(2)
    with Receiver() as rx:
        rx.slow(1.5, times=3)
        s = Session(options(rx, tmp_path, request_timeout_s=0.3,
                            retry=RetryPolicy(attempts=3, base_s=0.01, max_s=0.02)))
        s.send_window(ws[0])  # three timeouts: spooled
        assert len(s.spool) == 1 and not rx.ingests
        s.send_window(ws[1])  # server fast again: spool drained first
        deadline = time.time() + 5
        while rx.abandoned < 3 and time.time() < deadline:
            time.sleep(0.1)
        assert [int(i.from_s) for i in rx.ingests] == [w.start_ns // S for w in ws]
        assert rx.abandoned == 3  # the slow requests were given up by the client


def test_full_spool_drops_oldest_with_warning(tmp_path, caplog):
    ws = windows(8)
    with Receiver() as rx:
        s = Session(options(rx, tmp_path, spool_max_bytes=200,
                            retry=RetryPolicy(attempts=1)))
        rx.down()
        with caplog.at_level(logging.WARNING, logger="ebpf-upload"):
            for w in ws[:7]:
                s.send_window(w)
        assert "spool full" in caplog.text and "oldest" in caplog.text
        dropped = s.spool.dropped
        assert dropped > 0 and len(s.spool) + dropped == 7
        rx.up()
        s.send_window(ws[7])
        got = [int(i.from_s) for i in rx.ingests]
        assert got == [w.start_ns // S for w in ws[dropped:]]  # newest kept, in order
        assert "dropped from the full spool" in s.summary()


def test_replay_that_only_spooled_exits_non_zero_saying_so(tmp_path):
    folded = tmp_path / "in.folded"
    folded.write_text("main;work 5\n")
    with Receiver() as rx:
        rx.down()
        opts = options(rx, tmp_path, inputs=(str(folded),))
        with pytest.raises(DeliveryError) as err:
            run_replay(opts)
    msg = str(err.value)
    assert err.value.exit_code == DeliveryError.exit_code != 0
    assert "\n" not in msg and "not delivered" in msg and "spool" in msg


def test_replay_fully_delivered_exits_zero(tmp_path):
    folded = tmp_path / "in.folded"
    folded.write_text("main;work 5\n")
    with Receiver() as rx:
        assert run_replay(options(rx, tmp_path, inputs=(str(folded),))) == 0
        assert rx.stacks() == {"main;work": 5}
