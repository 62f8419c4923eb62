"""Kernel mmap records (recorder/mmap_events.py) as the recorder parses them, and the objects of
processes that exited before /proc was read (recorder/objects.py)."""

from __future__ import annotations

import os
import shutil
import struct

from recorder import mmap_events
from recorder.mmap_events import PERF_RECORD_EXIT, PERF_RECORD_MMAP2, MmapTracker, _attr
from recorder.objects import ObjectRegistry
from recorder.procfs import Mapping
from recording.elf import elf_info_of_path

PERF_RECORD_MISC_MMAP_BUILD_ID = 1 << 14  # include/uapi/linux/perf_event.h


def mmap2(pid: int, start: int, maj: int, mnr: int, ino: int, path: str, misc: int = 0) -> bytes:
    name = path.encode() + b"\0"
    name += b"\0" * (-len(name) % 8)
    body = struct.pack("<IIQQQIIQQII", pid, pid, start, 0x1000, 0, maj, mnr, ino, 0, 5, 2) + name
    return struct.pack("<IHH", PERF_RECORD_MMAP2, misc, 8 + len(body)) + body


def tracker() -> MmapTracker:
    t = MmapTracker(cpus=[])  # no perf events: records are fed by hand
    return t


def test_no_build_ids_asked_of_the_kernel():
    # attr.build_id (bit 34 of the flags word) would corrupt other consumers' records: see
    # the module's docstring
    flags = struct.unpack_from("<Q", _attr(), 40)[0]
    assert not flags & (1 << 34)
    assert flags & (1 << 23)  # mmap2


def test_device_and_inode_are_read_whatever_misc_says():
    # another consumer's build-ID request leaves the flag in the shared record
    # (kernel/events/core.c, perf_event_mmap_output): the body is still device and inode
    t = tracker()
    t._record(mmap2(42, 0x400000, 0xFE, 0x01, 123456, "/usr/bin/app",
                    misc=PERF_RECORD_MISC_MMAP_BUILD_ID | 2))
    (m,) = t.mappings(42).mappings
    assert (m.start, m.end, m.dev, m.inode, m.path) == (0x400000, 0x401000, "fe:01", 123456,
                                                       "/usr/bin/app")


def test_a_gone_process_gets_its_object_when_device_and_inode_match(tmp_path):
    exe = tmp_path / "app"
    shutil.copy(os.path.realpath("/usr/bin/true"), exe)
    st = os.stat(exe)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    proc = tmp_path / "proc"
    proc.mkdir()  # pid 77 is not there: it exited
    same = Mapping(0x1000, 0x2000, "r-xp", 0, dev, st.st_ino, str(exe))
    _, facts = ObjectRegistry(str(proc)).object_for(77, same)
    assert facts is not None
    assert facts.build_id == elf_info_of_path(str(exe)).build_id is not None
    # the same path with another inode is another file (replaced since): not read
    other = Mapping(0x1000, 0x2000, "r-xp", 0, dev, st.st_ino + 1, str(exe))
    _, facts = ObjectRegistry(str(proc)).object_for(77, other)
    assert facts is not None and facts.build_id is None and facts.reason


def exit_record(pid: int) -> bytes:
    body = struct.pack("<IIIIQ", pid, 1, pid, 1, 0)
    return struct.pack("<IHH", PERF_RECORD_EXIT, 0, 8 + len(body)) + body


def test_exited_processes_are_pruned_behind_a_long_lived_one(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(mmap_events.time, "monotonic", lambda: clock[0])
    t = tracker()
    t._record(mmap2(10, 0x400000, 8, 1, 1, "/usr/bin/server"))  # lives on, first in order
    t._record(mmap2(20, 0x400000, 8, 1, 2, "/usr/bin/true"))
    t._record(exit_record(20))
    t.poll()
    assert t.mappings(20) is not None  # kept a while for samples still in the kernel
    clock[0] += mmap_events.KEEP_AFTER_EXIT_S + 1
    t.poll()
    assert t.mappings(20) is None and t.mappings(10) is not None


def test_a_pid_reused_after_an_exit_starts_a_new_mapping_list():
    t = tracker()
    t._record(mmap2(30, 0x400000, 8, 1, 1, "/usr/bin/old"))
    t._record(exit_record(30))
    t._record(mmap2(30, 0x7F0000000000, 8, 1, 2, "/usr/lib/libnew.so"))  # a new process
    got = t.mappings(30)
    assert got is not None and got.exited_at is None
    assert [m.path for m in got.mappings] == ["/usr/lib/libnew.so"]
