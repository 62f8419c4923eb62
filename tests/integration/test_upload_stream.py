"""Continuous mode as a user runs it: `... | ebpf-upload -` in a subprocess, a receiver as server.

The stream is written by the test in the symbolizer's convention (docs/recording-format.md) so
these tests do not depend on the recorder or BPF.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.conftest import tool
from tests.receiver import Receiver

S = 1_000_000_000


def block(from_s: int, stacks: dict[str, int], end: bool = True) -> bytes:
    meta = {"from_ns": from_s * S, "until_ns": (from_s + 1) * S, "sample_rate": 100,
            "labels": {}}
    lines = ["# ebpf-profiler " + json.dumps(meta)] + [f"{k} {v}" for k, v in stacks.items()]
    if end:
        lines.append("# ebpf-profiler-window-end")
    return ("\n".join(lines) + "\n").encode()


def start(rx: Receiver, tmp_path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYROSCOPE_APPLICATION_NAME="stream")
    return subprocess.Popen([tool("ebpf-upload"), "-", "--server-address", rx.url,
                             "--spool-dir", str(tmp_path / "spool"), *extra],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for the signal (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read().splitlines()
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    except OSError:
        pass
    return False


def wait_for(pred, timeout: float = 15.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_each_window_uploaded_when_complete_and_last_flushed_at_eof(tmp_path):
    b0 = (int(time.time()) // 10 - 3) * 10  # three upload windows ago, aligned
    with Receiver() as rx:
        p = start(rx, tmp_path)
        assert p.stdin is not None and p.stderr is not None
        p.stdin.write(block(b0 + 1, {"w;main;alpha": 3}))
        p.stdin.write(block(b0 + 7, {"w;main;alpha": 2, "w;main;beta": 5}))
        p.stdin.write(block(b0 + 10, {"w;main;gamma": 4}))  # the next window began
        p.stdin.flush()
        assert wait_for(lambda: len(rx.ingests) == 1), rx.log
        assert p.poll() is None  # still running: uploaded while the stream is open
        first = rx.ingests[0]
        assert (first.from_s, first.until_s) == (b0, b0 + 10)
        assert first.stacks == {"w;main;alpha": 5, "w;main;beta": 5}
        assert first.name == "stream.cpu{}" and first.spy_name == "ebpfspy"
        p.stdin.write(block(b0 + 12, {"w;main;gamma": 1}, end=False))  # no window end
        p.stdin.close()  # upstream stopped
        assert p.wait(timeout=30) == 0
        err = p.stderr.read().decode()
        assert "end of input" in err and "flushed the last window (5 sample" in err
        assert len(rx.ingests) == 2
        last = rx.ingests[1]
        assert (last.from_s, last.until_s) == (b0 + 10, b0 + 20)
        assert last.stacks == {"w;main;gamma": 5}


def test_push_protocol_in_continuous_mode(tmp_path):
    """`--protocol push` (here by PYROSCOPE_PROTOCOL): each completed window is one
    PushRequest to /push.v1.PusherService/Push, the last flushed at the end of input."""
    b0 = (int(time.time()) // 10 - 3) * 10
    with Receiver() as rx:
        env = dict(os.environ, PYROSCOPE_APPLICATION_NAME="stream", PYROSCOPE_PROTOCOL="push")
        p = subprocess.Popen([tool("ebpf-upload"), "-", "--server-address", rx.url,
                              "--spool-dir", str(tmp_path / "spool"), "--tag", "env=ci"],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert p.stdin is not None and p.stderr is not None
        p.stdin.write(block(b0 + 1, {"w;main;alpha": 3}))
        p.stdin.write(block(b0 + 10, {"w;main;gamma": 4}))  # the next window began
        p.stdin.flush()
        assert wait_for(lambda: len(rx.ingests) == 1), rx.log
        assert p.poll() is None
        first = rx.ingests[0]
        assert first.format == "push" and first.app == "stream"
        assert first.profile_type == "process_cpu" and first.labels == {"env": "ci"}
        assert (first.from_s, first.until_s) == (b0, b0 + 10)
        assert first.stacks == {"w;main;alpha": 3}
        p.stdin.close()
        assert p.wait(timeout=30) == 0, p.stderr.read().decode()
        assert [i.stacks for i in rx.ingests] == [{"w;main;alpha": 3}, {"w;main;gamma": 4}]
        assert {path for _, path, _ in rx.seen} == {"/push.v1.PusherService/Push"}


def test_sigterm_flushes_and_exits_cleanly(tmp_path):
    b0 = (int(time.time()) // 10 - 1) * 10
    with Receiver() as rx:
        p = start(rx, tmp_path)
        assert p.stdin is not None and p.stderr is not None
        p.stdin.write(block(b0 + 2, {"w;main;alpha": 9}))
        p.stdin.flush()
        # the signal must come once its handler is in place (a loaded machine can take
        # seconds to start Python), which /proc/PID/status says (SigCgt)
        assert wait_for(lambda: catches(p.pid, signal.SIGTERM))
        time.sleep(0.5)  # let it read the block before the signal
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
        err = p.stderr.read().decode()
        assert "SIGTERM" in err
        assert [i.stacks for i in rx.ingests] == [{"w;main;alpha": 9}]
        p.stdin.close()


def test_server_down_in_stream_spools_then_delivers_in_order(tmp_path):
    b0 = (int(time.time()) // 10 - 5) * 10
    with Receiver() as rx:
        rx.down()
        p = start(rx, tmp_path, "--retries", "1")
        assert p.stdin is not None and p.stderr is not None
        for i in range(3):
            p.stdin.write(block(b0 + 10 * i, {f"w;win{i}": i + 1}))
        p.stdin.flush()
        spool = tmp_path / "spool"
        assert wait_for(lambda: len(list(spool.rglob("*.req"))) >= 2)
        rx.up()
        p.stdin.write(block(b0 + 30, {"w;win3": 4}))
        p.stdin.close()
        assert p.wait(timeout=30) == 0
        assert [int(i.from_s) for i in rx.ingests] == [b0 + 10 * i for i in range(4)]
        assert "server is back" in p.stderr.read().decode()
        assert not list(spool.rglob("*.req"))


def test_secret_flag_leaves_the_process_title(tmp_path):
    with Receiver() as rx:
        p = start(rx, tmp_path, "--auth-token", "cmdline-SECRET-1")
        try:
            cmdline = f"/proc/{p.pid}/cmdline"

            def title() -> bytes:
                with open(cmdline, "rb") as f:
                    return f.read()

            # it re-executes itself once at start, with the token moved to its environment
            # (before that, the title is the forked test runner's, then the original one)
            assert wait_for(lambda: b"--server-address" in title()
                            and b"cmdline-SECRET-1" not in title()), title()
            assert b"--auth-token" not in title() and b"ebpf-upload" in title()
            assert p.poll() is None  # and it is still running, reading stdin
        finally:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=30)


def test_recording_on_stdin_is_refused_with_the_fix(tmp_path):
    with Receiver() as rx:
        p = start(rx, tmp_path)
        assert p.stdin is not None and p.stderr is not None
        p.stdin.write(b"PAR1\x00\x00\x15binary")
        p.stdin.close()
        assert p.wait(timeout=30) == 3
        assert "ebpf-symbolize" in p.stderr.read().decode()


def test_header_values_leave_the_process_title_and_still_reach_the_server(tmp_path):
    b0 = (int(time.time()) // 10 - 2) * 10
    with Receiver(auth_token="tok-SECRET-3") as rx:
        p = start(rx, tmp_path, "--header", "X-API-Key=hdr-SECRET-2", "--header=X-Two=a=b,c",
                  "--auth-token=tok-SECRET-3")
        assert p.stdin is not None
        try:
            def title() -> bytes:
                with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                    return f.read()

            assert wait_for(lambda: b"--server-address" in title()
                            and b"SECRET" not in title()), title()
            assert b"--header" not in title() and b"X-Two" not in title()
            p.stdin.write(block(b0 + 1, {"w;main;alpha": 3}))
        finally:
            p.stdin.close()
            assert p.wait(timeout=30) == 0
    (ing,) = rx.ingests
    # moved flags are parsed as flags again: both headers, a value with '=' and ',' intact
    assert ing.headers["x-api-key"] == "hdr-SECRET-2" and ing.headers["x-two"] == "a=b,c"


def test_malformed_line_sends_the_open_window_before_the_error(tmp_path):
    b0 = (int(time.time()) // 10 - 2) * 10
    with Receiver() as rx:
        p = start(rx, tmp_path)
        assert p.stdin is not None and p.stderr is not None
        p.stdin.write(block(b0 + 1, {"w;main;alpha": 3}))  # its window is still open
        p.stdin.write(b"w;main;broken \xc2\xb2\n")
        p.stdin.flush()
        assert p.wait(timeout=30) == 3
        err = p.stderr.read().decode()
        assert "stdin:" in err and "not a folded line" in err and "Traceback" not in err
        assert rx.stacks() == {"w;main;alpha": 3}, err
