"""A live process that only added executable mappings (EV_MMAP) gets them from the kernel's
mmap records, not from a new /proc read; /proc is read whenever the records cannot be trusted
to be complete (fake /proc tree, a tracker filled by hand: no root, no BPF)."""

from __future__ import annotations

from pathlib import Path

from recorder.mmap_events import MmapRecord, MmapTracker, ProcessMaps
from recorder.objects import ObjectRegistry
from recorder.snapshots import ProcessTracker
from recording.schema import Row
from tests.helpers.fake_proc import fake_proc

PID = 11
# what a dlopen'ed library's executable segment looks like in a PERF_RECORD_MMAP2
LIBNEW = MmapRecord(0x7F2000000000, 0x7F2000001000, 0x1000, 5, "/usr/lib/libnew.so", "08:01", 77)
# what /proc says was mapped (a different library): seen only if /proc is read
PROC_ONLY = "7f3000000000-7f3000001000 r-xp 00000000 08:01 88 /usr/lib/libproc.so\n"


def _records() -> MmapTracker:
    return MmapTracker(cpus=[])  # no perf event: records are added by hand


def _setup(tmp_path: Path) -> tuple[ProcessTracker, MmapTracker, Path]:
    proc = fake_proc(tmp_path, PID)
    mmaps = _records()
    tracker = ProcessTracker(ObjectRegistry(str(proc)), None, str(proc), mmaps=mmaps)
    assert tracker.observe(PID)  # the first snapshot, from /proc
    with open(proc / str(PID) / "maps", "a") as f:
        f.write(PROC_ONLY)
    return tracker, mmaps, proc


def _paths(rows: list[Row]) -> set[str]:
    return {r["path"] for r in rows if r["record"] == "mapping"}


def test_added_mappings_come_from_the_kernel_records_without_reading_proc(tmp_path):
    tracker, mmaps, _proc = _setup(tmp_path)
    mmaps.procs[PID] = ProcessMaps(mappings=[LIBNEW])
    rows = tracker.observe(PID, mapped=True)
    paths = _paths(rows)
    assert "/usr/lib/libnew.so" in paths and "/usr/lib/libproc.so" not in paths
    assert "/opt/app/server" in paths  # the rest of the snapshot stays
    new = next(r for r in rows if r["record"] == "mapping" and r["path"] == "/usr/lib/libnew.so")
    assert (new["start"], new["end"], new["file_offset"], new["inode"], new["dev"],
            new["perms"]) == (LIBNEW.start, LIBNEW.end, 0x1000, 77, "08:01", "r-xp")
    assert {r["maps_seq"] for r in rows if r["record"] in ("process", "mapping")} == {1}
    process = next(r for r in rows if r["record"] == "process")
    assert process["comm"] == "server (x)" and process["reason"] is None


def test_records_already_in_the_snapshot_are_not_new(tmp_path):
    tracker, mmaps, _proc = _setup(tmp_path)
    # the kernel's record of the server's text, which /proc showed at the first snapshot
    mmaps.procs[PID] = ProcessMaps(mappings=[
        MmapRecord(0x55D0C0001000, 0x55D0C0002000, 0x1000, 5, "/opt/app/server", "08:01", 1234)])
    # nothing to add from the records: /proc is read (and has libproc.so)
    assert "/usr/lib/libproc.so" in _paths(tracker.observe(PID, mapped=True))


def test_proc_is_read_when_records_were_lost_since_the_snapshot(tmp_path):
    tracker, mmaps, _proc = _setup(tmp_path)
    mmaps.procs[PID] = ProcessMaps(mappings=[LIBNEW])
    mmaps.lost = 3  # PERF_RECORD_LOST after the snapshot: the records may lack a mapping
    assert "/usr/lib/libproc.so" in _paths(tracker.observe(PID, mapped=True))


def test_proc_is_read_when_a_record_overlaps_a_known_mapping(tmp_path):
    tracker, mmaps, _proc = _setup(tmp_path)
    # munmap of libc and a new library at its addresses: only /proc knows libc is gone
    mmaps.procs[PID] = ProcessMaps(mappings=[
        MmapRecord(0x7F1000000000, 0x7F1000002000, 0, 5, "/usr/lib/libother.so", "08:01", 5)])
    paths = _paths(tracker.observe(PID, mapped=True))
    assert "/usr/lib/libproc.so" in paths and "/usr/lib/libother.so" not in paths


def test_records_overlapping_each_other_make_proc_read(tmp_path):
    tracker, mmaps, _proc = _setup(tmp_path)
    mmaps.procs[PID] = ProcessMaps(mappings=[
        LIBNEW, MmapRecord(LIBNEW.start, LIBNEW.end + 0x1000, 0, 5, "/usr/lib/x.so", "08:01", 9)])
    assert "/usr/lib/libproc.so" in _paths(tracker.observe(PID, mapped=True))


def test_an_exec_or_new_process_reads_proc_whatever_the_records(tmp_path):
    tracker, mmaps, _proc = _setup(tmp_path)
    mmaps.procs[PID] = ProcessMaps(mappings=[LIBNEW])
    paths = _paths(tracker.observe(PID))  # not `mapped`: an exec, or a pid seen anew
    assert "/usr/lib/libproc.so" in paths and "/usr/lib/libnew.so" not in paths
