"""A perf map written just before its process exits is still read (recorder/perfmap.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from recorder.perfmap import PerfMapReader


def test_lines_written_before_exit_are_read_after_it():
    child = subprocess.Popen(["sleep", "30"])
    path = Path(f"/tmp/perf-{child.pid}.map")
    try:
        path.write_text("7f0000001000 10 first\n")
        os.chmod(path, 0o644)
        reader = PerfMapReader()
        reader.remember(child.pid)
        assert [r["name"] for r in reader.read_new(child.pid)] == ["first"]
        with path.open("a") as f:
            f.write("7f0000002000 20 written_last\n")
        child.kill()
        child.wait()  # reaped: /proc/PID is gone
        assert not Path(f"/proc/{child.pid}").exists()
        rows = reader.read_new(child.pid)
        assert [(r["name"], r["addr"], r["size"]) for r in rows] == [
            ("written_last", 0x7F0000002000, 0x20)]
        assert reader.read_new(child.pid) == []  # one last read, not one per drain
    finally:
        child.kill()
        child.wait()
        path.unlink(missing_ok=True)


def test_a_process_never_remembered_is_not_read_after_exit():
    child = subprocess.Popen(["sleep", "30"])
    path = Path(f"/tmp/perf-{child.pid}.map")
    try:
        path.write_text("7f0000001000 10 first\n")
        child.kill()
        child.wait()
        assert PerfMapReader().read_new(child.pid) == []
    finally:
        path.unlink(missing_ok=True)


def test_a_process_gone_before_proc_was_read_is_read_as_the_uid_the_kernel_saw(tmp_path):
    child = subprocess.Popen(["sleep", "30"])
    path = Path(f"/tmp/perf-{child.pid}.map")
    try:
        path.write_text("7f0000001000 10 jitted\n")
        os.chown(path, 4242, 4242)
        child.kill()
        child.wait()
        reader = PerfMapReader(warn=lambda _m: None)
        reader.note_uid(child.pid, 1000)  # another user's file: refused
        assert reader.read_new(child.pid) == []
        reader.note_uid(child.pid, 4242)
        assert [r["name"] for r in reader.read_new(child.pid)] == ["jitted"]
    finally:
        path.unlink(missing_ok=True)
