"""Recorder pieces that read /proc and ELF files, on a fake /proc tree (no root, no BPF)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from recorder.objects import ObjectRegistry
from recorder.procfs import descendants, is_running, parse_maps, parse_stat_ppid, snapshot
from recorder.snapshots import ProcessTracker
from tests.helpers.fake_proc import MAPS, fake_proc


def test_parse_maps_keeps_executable_mappings_only():
    maps = parse_maps(MAPS)
    assert [m.path for m in maps] == ["/opt/app/server", "", "/usr/lib/libc.so.6 (deleted)",
                                      "[vdso]"]
    server = maps[0]
    assert (server.start, server.end, server.file_offset, server.inode) == (
        0x55D0C0001000, 0x55D0C0002000, 0x1000, 1234)
    assert server.map_files_name == "55d0c0001000-55d0c0002000"
    assert maps[1].is_file is False and maps[3].is_file is False


def test_stat_ppid_survives_parentheses_and_spaces_in_comm():
    assert parse_stat_ppid("42 (a) b) (c) S 7 42 42 0") == 7


def test_snapshot_of_a_vanished_process_is_a_reason_not_an_exception(tmp_path):
    snap = snapshot(424242, str(tmp_path))
    assert snap.reason and "exited" in snap.reason and snap.mappings == []


def test_mapping_changes_make_a_new_snapshot_and_perf_map_entries_are_read(tmp_path):
    proc = fake_proc(tmp_path, 11)
    (proc / "11" / "root" / "tmp").mkdir(parents=True)
    (proc / "11" / "root" / "tmp" / "perf-11.map").write_text(
        "7f0000000100 40 LazyCompile:*handler app.js:10\nbad line\n")
    tracker = ProcessTracker(ObjectRegistry(str(proc)), None, str(proc))
    first = tracker.observe(11)
    assert [r["name"] for r in first if r["record"] == "perfmap"] == [
        "LazyCompile:*handler app.js:10"]
    assert tracker.observe(11) == []  # unchanged: nothing new to write
    with open(proc / "11" / "maps", "a") as f:  # dlopen of a new library
        f.write("7f2000000000-7f2000001000 r-xp 00000000 08:01 77 /usr/lib/libnew.so\n")
    again = tracker.observe(11)
    seqs = {r["maps_seq"] for r in again if r["record"] in ("process", "mapping")}
    assert seqs == {1}
    assert not [r for r in again if r["record"] == "perfmap"]  # entries are written once


def test_descendants_and_running_state_of_real_processes():
    child = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (found := descendants({child.pid})) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found and all(is_running(p) for p in found)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert not is_running(child.pid)


def test_idle_processes_are_forgotten_and_resnapshotted_in_full(tmp_path):
    proc = fake_proc(tmp_path, 12)
    (proc / "12" / "root" / "tmp").mkdir(parents=True)
    (proc / "12" / "root" / "tmp" / "perf-12.map").write_text("7f0000000100 40 jitted\n")
    tracker = ProcessTracker(ObjectRegistry(str(proc)), None, str(proc))
    first = tracker.observe(12)
    now = time.time()
    tracker.sampled(12, now)
    assert tracker.forget_idle(now + 30, 60) == []
    assert tracker.forget_idle(now + 61, 60) == [12] and len(tracker) == 0
    again = tracker.observe(12)
    kinds = [r["record"] for r in again]
    assert kinds.count("process") == 1 and kinds.count("mapping") == 4
    assert [r["name"] for r in again if r["record"] == "perfmap"] == ["jitted"]
    assert {r["maps_seq"] for r in again if "maps_seq" in r and r["maps_seq"] is not None} == {1}
    assert "object" not in kinds or len(first) > len(again)  # objects are written once


def test_procmap_query_agrees_with_the_text_of_proc_maps():
    """The ioctl path (Linux 6.11+) must give what parsing /proc/PID/maps gives, except the
    [vsyscall] gate area, which is not a VMA of the process."""
    from recorder.procfs import Mapping
    from recorder.procmap_query import Unsupported, query_exec_vmas

    path = f"/proc/{os.getpid()}/maps"
    try:
        queried = [Mapping(*vma) for vma in query_exec_vmas(path)]
    except Unsupported:
        pytest.skip("kernel without PROCMAP_QUERY (before 6.11): the text path is used")
    with open(path) as f:
        parsed = [m for m in parse_maps(f.read()) if m.path != "[vsyscall]"]
    assert queried == parsed
    assert any(m.path.endswith(".so") or ".so." in m.path for m in queried)


def test_gated_command_waits_for_release_and_abort_never_runs_it(tmp_path):
    from recorder.targets import GatedCommand

    ran = tmp_path / "ran"
    gated = GatedCommand(("touch", str(ran)))
    time.sleep(0.2)
    assert not ran.exists()  # held at the gate
    gated.abort()
    assert not ran.exists() and gated.returncode is not None

    released = GatedCommand(("touch", str(ran)))
    released.release()
    assert released.wait() == 0 and ran.exists()
