"""Executable mappings as the kernel reports them at mmap time (PERF_RECORD_MMAP2), as perf has.

/proc/PID/maps can only be read while a process lives; a process that runs for a few
milliseconds (a shell pipeline's `true`, `grep`) is often gone by the time its first sample is
handled. perf gets every executable mmap from the kernel when it happens: a perf event with
`mmap2` tracking reports the address, length, file offset, protection, path, device and inode,
in a ring buffer per CPU. This opens such an event
(a software dummy event: it samples nothing, it only tracks), system-wide, and keeps per pid the
executable mappings since its last exec, so a process that exited before /proc was read still
gets a snapshot. Records are parsed by hand: Python has no perf ring buffer reader, and bcc's
perf buffers only carry BPF output.

No build IDs from the kernel (attr.build_id, Linux 5.12): perf_event_mmap_output()
(kernel/events/core.c) sets PERF_RECORD_MISC_MMAP_BUILD_ID in the record it shares with every
consumer of the same mmap and never clears it, so each consumer iterated after a build-ID one
(every per-task event: `perf record -p PID` or `perf record -- CMD` started by anyone on the
host) gets device and inode flagged as a build ID; perf 6.1's `perf script` then overflows a
stack buffer and aborts ("stack smashing detected"). A profiler that runs on production hosts
must not break the other tools there. The file is identified by device and inode instead and
its build ID read from it (recorder/objects.py); for the same reason, the body is parsed as
this event asked for it, whatever another consumer left in `misc`.

Layouts: include/uapi/linux/perf_event.h (struct perf_event_attr, perf_event_mmap_page, the
PERF_RECORD_* bodies).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_DUMMY = 9
PERF_SAMPLE_TID = 1 << 1
PERF_SAMPLE_TIME = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
# attr flag bits (the bitfield after read_format)
_DISABLED, _MMAP, _COMM, _TASK, _SAMPLE_ID_ALL, _MMAP2, _COMM_EXEC = (0, 8, 9, 13, 18, 23, 24)
PERF_RECORD_LOST, PERF_RECORD_COMM, PERF_RECORD_EXIT, PERF_RECORD_MMAP2 = 2, 3, 4, 10
PERF_RECORD_MISC_COMM_EXEC = 1 << 13
PERF_EVENT_IOC_ENABLE = 0x2400
PROT_EXEC = 4
_NR_PERF_EVENT_OPEN = 298  # x86-64
_ATTR_SIZE = 136  # PERF_ATTR_SIZE_VER8
_HEADER = struct.Struct("<IHH")
_MMAP2_FIXED = struct.Struct("<IIQQQ")  # pid, tid, addr, len, pgoff
_MMAP2_ID = struct.Struct("<IIQQ")  # maj, min, ino, ino_generation
_PROT_FLAGS = struct.Struct("<II")
# Mappings kept for a pid that is never looked up (not sampled): bounded, oldest dropped first.
MAX_PIDS = 8192
# A pid's mappings are kept this long after its exit, for the samples still in the kernel.
KEEP_AFTER_EXIT_S = 30.0


@dataclass(frozen=True, slots=True)
class MmapRecord:
    start: int
    end: int
    file_offset: int
    prot: int
    path: str
    dev: str = ""  # MAJ:MIN in hex as /proc/PID/maps shows it
    inode: int = 0


@dataclass
class ProcessMaps:
    comm: str | None = None
    mappings: list[MmapRecord] = field(default_factory=list)
    exited_at: float | None = None


class _Ring:
    def __init__(self, fd: int, pages: int) -> None:
        self.fd = fd
        self.page = mmap.PAGESIZE
        self.size = pages * self.page
        self.buf = mmap.mmap(fd, self.page + self.size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)

    def read(self) -> list[bytes]:
        """Records between data_tail and data_head (perf_event_mmap_page at offsets 1024/1032),
        then data_tail moved past them so the kernel can reuse the space."""
        head, tail = struct.unpack_from("<QQ", self.buf, 1024)
        out = []
        while tail < head:
            at = self.page + tail % self.size
            hdr = self._bytes(at, 8)
            _type, _misc, size = _HEADER.unpack(hdr)
            if size < 8:
                break  # a corrupt header: drop the rest rather than loop
            out.append(self._bytes(at, size))
            tail += size
        struct.pack_into("<Q", self.buf, 1032, tail)
        return out

    def _bytes(self, at: int, n: int) -> bytes:
        end = self.page + self.size
        if at + n <= end:
            return self.buf[at:at + n]
        first = end - at
        return self.buf[at:end] + self.buf[self.page:self.page + n - first]

    def close(self) -> None:
        self.buf.close()
        os.close(self.fd)


def _attr() -> bytes:
    flags = 0
    for bit in (_DISABLED, _MMAP, _COMM, _TASK, _SAMPLE_ID_ALL, _MMAP2, _COMM_EXEC):
        flags |= 1 << bit
    raw = bytearray(_ATTR_SIZE)
    struct.pack_into("<IIQQQQQ", raw, 0, PERF_TYPE_SOFTWARE, _ATTR_SIZE, PERF_COUNT_SW_DUMMY,
                     0, PERF_SAMPLE_TID | PERF_SAMPLE_TIME, 0, flags)
    struct.pack_into("<I", raw, 48, 1)  # wakeup_events
    return bytes(raw)


class MmapTracker:
    """Per pid, the executable mappings the kernel reported since its last exec."""

    def __init__(self, cpus: list[int] | None = None, pages: int = 64) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._rings: list[_Ring] = []
        self.lost = 0
        self.procs: OrderedDict[int, ProcessMaps] = OrderedDict()
        # exited pids in order of exit: pruned after KEEP_AFTER_EXIT_S whatever `procs`' order
        # (a long-lived process that mapped something once would otherwise stay first in it
        # and keep every exited one behind it until MAX_PIDS)
        self._exited: OrderedDict[int, float] = OrderedDict()
        attr = ctypes.create_string_buffer(_attr(), _ATTR_SIZE)
        for cpu in cpus if cpus is not None else sorted(os.sched_getaffinity(0)):
            fd = self._libc.syscall(_NR_PERF_EVENT_OPEN, attr, -1, cpu, -1,
                                    PERF_FLAG_FD_CLOEXEC)
            if fd < 0:
                err = ctypes.get_errno()
                self.close()
                raise OSError(err, f"perf_event_open (mmap tracking) failed: "
                              f"{os.strerror(err)}")
            self._rings.append(_Ring(fd, pages))
        for r in self._rings:
            self._libc.ioctl(r.fd, PERF_EVENT_IOC_ENABLE, 0)

    def poll(self) -> None:
        """Take in what the kernel reported since the last call."""
        for ring in self._rings:
            for rec in ring.read():
                self._record(rec)
        now = time.monotonic()
        while self._exited:
            pid, at = next(iter(self._exited.items()))
            if now - at <= KEEP_AFTER_EXIT_S:
                break
            del self._exited[pid]
            p = self.procs.get(pid)
            if p is not None and p.exited_at == at:
                del self.procs[pid]
        while len(self.procs) > MAX_PIDS:
            self.procs.popitem(last=False)

    def mappings(self, pid: int) -> ProcessMaps | None:
        return self.procs.get(pid)

    def _proc(self, pid: int) -> ProcessMaps:
        p = self.procs.get(pid)
        if p is None or p.exited_at is not None:
            # (a record after the exit is a new process's that reuses the pid: the old one's
            # mappings are not its own, and an extension of its snapshot must not get them)
            p = self.procs[pid] = ProcessMaps()
        self.procs.move_to_end(pid)
        return p

    def _record(self, rec: bytes) -> None:
        rtype, misc, _size = _HEADER.unpack_from(rec)
        if rtype == PERF_RECORD_MMAP2:
            self._mmap2(rec)
        elif rtype == PERF_RECORD_COMM and misc & PERF_RECORD_MISC_COMM_EXEC:
            pid, tid = struct.unpack_from("<II", rec, 8)
            if pid == tid:
                p = self._proc(pid)
                p.mappings = []  # exec replaced every mapping
                p.comm = _cstring(rec, 16)
        elif rtype == PERF_RECORD_EXIT:
            pid, _ppid, tid = struct.unpack_from("<III", rec, 8)
            gone = self.procs.get(pid)
            if gone is not None and pid == tid:
                gone.exited_at = time.monotonic()
                self._exited.pop(pid, None)
                self._exited[pid] = gone.exited_at
        elif rtype == PERF_RECORD_LOST:
            self.lost += struct.unpack_from("<QQ", rec, 8)[1]

    def _mmap2(self, rec: bytes) -> None:
        pid, _tid, addr, length, pgoff = _MMAP2_FIXED.unpack_from(rec, 8)
        at = 8 + _MMAP2_FIXED.size
        # device and inode, as this event's attr asks: not by header.misc (see above)
        maj, mnr, inode, _gen = _MMAP2_ID.unpack_from(rec, at)
        prot, _flags = _PROT_FLAGS.unpack_from(rec, at + 24)
        if not prot & PROT_EXEC:
            return
        # interned: the same few library paths are mapped by every process
        path = sys.intern(_cstring(rec, at + 32))
        if path == "//anon":  # anonymous memory (a JIT's code): /proc/PID/maps leaves it blank
            path = ""
        self._proc(pid).mappings.append(
            MmapRecord(addr, addr + length, pgoff, prot, path,
                       sys.intern(f"{maj:02x}:{mnr:02x}"), inode))

    def close(self) -> None:
        for r in self._rings:
            r.close()
        self._rings = []


def _cstring(rec: bytes, at: int) -> str:
    end = rec.find(b"\0", at)
    return rec[at:end if end >= 0 else len(rec)].decode("utf-8", "replace")
