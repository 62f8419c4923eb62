"""The test receiver, checked against the real Pyroscope Python client (pyroscope-io 0.8.4),
which sends folded profiles to /ingest the way the servers expect. If the receiver parses what
the real client sends, it is a fair stand-in for a server in the other upload tests."""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from tests.receiver import Receiver
from tests.receiver.server import Reject, parse_name

CLIENT = textwrap.dedent("""
    import sys, time
    import pyroscope
    pyroscope.configure(application_name="rx.check", server_address=sys.argv[1],
                        auth_token="tok-123", tenant_id="tenant-7",
                        tags={"env": "test", "region": "eu"})
    def burn_cpu(until):
        x = 0
        while time.time() < until:
            x += 1
    burn_cpu(time.time() + float(sys.argv[2]))
    pyroscope.shutdown()
""")


@pytest.fixture(autouse=True)
def _remove_client_sockets():
    """The client's native agent leaves a /tmp/PYROSCOPE-<pid> socket behind (it ignores
    TMPDIR): remove the ones these tests made."""
    before = set(glob.glob("/tmp/PYROSCOPE-*"))
    yield
    for path in set(glob.glob("/tmp/PYROSCOPE-*")) - before:
        with contextlib.suppress(OSError):
            os.unlink(path)


def test_real_pyroscope_client_is_accepted_and_parsed(tmp_path):
    pytest.importorskip("pyroscope")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    with Receiver(auth_token="tok-123", require_tenant=True) as rx:
        started = time.time()
        # Past the next 10 s boundary: the client's agent then sends a window on its own
        # timer. What it holds at shutdown() is not always flushed (a 4 s run in a fresh-clone
        # `make test` sent nothing at all), so a run that ends within one window can be empty.
        seconds = 10 - started % 10 + 2
        subprocess.run([sys.executable, str(script), rx.url, f"{seconds:.2f}"], check=True,
                       timeout=60)
        deadline = time.time() + 15
        while not rx.ingests and time.time() < deadline:
            time.sleep(0.2)
        assert rx.log and all(status == 200 for status, _ in rx.log), rx.log
        assert rx.ingests
        for ing in rx.ingests:
            seen = (ing.name, ing.from_s, ing.until_s, ing.total, rx.log)
            assert ing.name == "rx.check.cpu{env=test,region=eu}"
            assert ing.app == "rx.check" and ing.labels == {"env": "test", "region": "eu"}
            assert ing.headers["authorization"] == "Bearer tok-123"
            assert ing.tenant == "tenant-7"
            assert ing.format == "folded" and ing.sample_rate == 100
            assert ing.from_s % 10 == 0 and ing.until_s % 10 == 0, seen  # 10 s boundaries
            assert ing.until_s - ing.from_s == 10, seen
            assert started - 10 <= ing.from_s <= time.time(), seen
        stacks = rx.stacks(app="rx.check")
        assert sum(stacks.values()) > 50, stacks  # ~100 Hz for seconds
        burn = sum(v for k, v in stacks.items() if k.split(";")[-1].endswith("burn_cpu"))
        assert burn / sum(stacks.values()) > 0.5, stacks
        # read back like the legacy server's /render
        url = f"{rx.url}/render?query=rx.check.cpu%7Benv%3D%22test%22%7D&format=collapsed"
        text = urllib.request.urlopen(url).read().decode()
        total = sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines())
        assert total == sum(stacks.values())


def test_real_client_with_wrong_token_is_refused(tmp_path):
    pytest.importorskip("pyroscope")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    with Receiver(auth_token="another") as rx:
        subprocess.run([sys.executable, str(script), rx.url, "1"], check=True, timeout=60)
        time.sleep(0.5)
        assert not rx.ingests
        assert all(status == 401 for status, _ in rx.log)


@pytest.mark.parametrize("name,ok", [
    ("app.cpu", True), ("app.cpu{}", True), ("a-b_c.d.cpu{k=v,k2=v2}", True),
    ("app", False), ("app.bogus{}", False), ("app.cpu{k=v=w}", False),
    ("app.cpu{__name__=x}", False), ("my app.cpu", False), ("app.cpu{k-1=v}", False),
])
def test_receiver_name_grammar(name, ok):
    try:
        parse_name(name)
        assert ok
    except Reject:
        assert not ok
