"""A hostile debuginfod server (issue 8 #10): downloads are bounded in time and size, and
redirects never leave the configured server's origin.

The servers here are local HTTP servers on loopback that answer as an attacker's would: one
byte at a time, forever; endless bodies; redirects to another host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from symbolizer.debuginfod import DebuginfodClient
from tests.helpers.debuginfod_server import (
    BID,
    BODY,
    Handler,
    Server,
    endless_chunked,
    one_file,
    too_long,
    trickle,
)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        s.close()


def serve(servers: list[Server], routes: dict[str, object]) -> Server:
    s = Server(routes)
    servers.append(s)
    return s


def fetch_within(client: DebuginfodClient, seconds: float) -> tuple[str | None, str | None]:
    """client.fetch(BID) in a thread; fails the test if it is still running after seconds
    (the old client never returned from a trickling server)."""
    result: list = []
    t = threading.Thread(target=lambda: result.append(client.fetch(BID)), daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"debuginfod download still running after {seconds} s")
    return result[0]


def test_trickling_server_is_cut_off_at_the_deadline(servers, tmp_path):
    s = serve(servers, {"/": trickle})
    client = DebuginfodClient((s.url,), str(tmp_path), timeout_s=1.0, max_time_s=2.0)
    t0 = time.monotonic()
    path, problem = fetch_within(client, 15)
    took = time.monotonic() - t0
    assert path is None
    assert "not done within 2 s" in problem and "DEBUGINFOD_MAXTIME" in problem
    assert took < 2.0 + 1.0 + 1.0  # the deadline, at most one read timeout, slack
    assert not list((tmp_path / "debuginfod").rglob("*.part-*"))  # nothing half-written kept
    # marked down: the next object does not wait again
    t0 = time.monotonic()
    assert client.fetch("cd" * 20)[0] is None
    assert time.monotonic() - t0 < 0.5 and len(s.hits) == 1


def test_endless_body_is_cut_off_at_the_size_limit(servers, tmp_path):
    s = serve(servers, {"/": endless_chunked})
    client = DebuginfodClient((s.url,), str(tmp_path), timeout_s=5.0, max_size=1 << 20)
    path, problem = fetch_within(client, 30)
    assert path is None and "too large" in problem
    assert not list((tmp_path / "debuginfod").rglob("*.part-*"))


def test_declared_length_over_the_limit_is_refused_before_reading(servers, tmp_path):
    s = serve(servers, {"/": too_long})
    client = DebuginfodClient((s.url,), str(tmp_path), timeout_s=5.0, max_size=1 << 20)
    path, problem = fetch_within(client, 10)
    assert path is None and f"{1 << 40} bytes is too large" in problem


def test_redirect_to_another_host_is_not_followed(servers, tmp_path):
    other = serve(servers, {"/": one_file})

    def to_other(h: Handler) -> None:
        h.send_response(302)
        h.send_header("Location", f"{other.url}{h.path}")
        h.end_headers()

    s = serve(servers, {"/": to_other})
    client = DebuginfodClient((s.url,), str(tmp_path), timeout_s=5.0)
    path, problem = fetch_within(client, 10)
    assert path is None
    assert "redirected to another host (http://127.0.0.1:" in problem
    assert other.hits == []  # the old client fetched it from the other server


def test_redirect_within_the_server_is_followed(servers, tmp_path):
    def moved(h: Handler) -> None:
        h.send_response(301)
        h.send_header("Location", f"/real/buildid/{BID}/debuginfo")
        h.end_headers()

    s = serve(servers, {"/": moved, "/real": one_file})
    client = DebuginfodClient((s.url,), str(tmp_path), timeout_s=5.0)
    path, problem = fetch_within(client, 10)
    assert problem is None and path is not None
    assert Path(path).read_bytes() == BODY
    assert oct(Path(path).stat().st_mode & 0o777) == "0o600"
    assert oct(Path(path).parent.stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "debuginfod").stat().st_mode & 0o777) == "0o700"


def test_limits_come_from_elfutils_variables(monkeypatch):
    from recording.errors import UsageError
    from symbolizer.cli import parse_args
    from symbolizer.flags import options_from_args

    monkeypatch.setenv("DEBUGINFOD_MAXTIME", "7")
    monkeypatch.setenv("DEBUGINFOD_MAXSIZE", "1000")
    o = options_from_args(parse_args(["x.parquet"]))
    assert (o.debuginfod_max_time_s, o.debuginfod_max_size) == (7.0, 1000)
    monkeypatch.setenv("DEBUGINFOD_MAXTIME", "nan")
    with pytest.raises(UsageError, match="DEBUGINFOD_MAXTIME='nan' is not a positive number"):
        options_from_args(parse_args(["x.parquet"]))
