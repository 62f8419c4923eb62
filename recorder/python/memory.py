"""Reading another process's memory with process_vm_readv(2), without ever raising.

process_vm_readv copies from the target's address space in one system call, without stopping
the target (ptrace would) and without opening /proc/PID/mem. The kernel checks the same
permission as ptrace attach (PTRACE_MODE_ATTACH_REALCREDS): the recorder runs as root. A read
of an unmapped address fails with EFAULT, or returns short when the range crosses into an
unmapped page; a process that exited fails with ESRCH. Every such failure is None here: the
process may exit at any moment, and an address recorded by BPF may be stale.
"""

from __future__ import annotations

import ctypes
import struct

_libc = ctypes.CDLL(None, use_errno=True)


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                              ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong]
_process_vm_readv.restype = ctypes.c_ssize_t

MAX_READ = 1 << 20  # no single read is larger: every length comes from the target's memory
_IOV_MAX = 1024  # UIO_MAXIOV: ranges one call takes
USER_TOP = 1 << 47  # x86-64 user addresses are below 2^47 (4-level page tables; 5-level: 2^56)


def _readable(addr: int, size: int) -> bool:
    """Whether a read is worth a system call: lengths and addresses come from the target."""
    return 0 < size <= MAX_READ and addr > 0 and addr + size <= 1 << 56


class ProcessMemory:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.reads = 0  # system calls made (tests and the recorder's cost figures)
        self.failed = 0

    def read(self, addr: int, size: int) -> bytes | None:
        """`size` bytes at `addr`, or None when any of them cannot be read."""
        if not _readable(addr, size):
            return None
        buf = ctypes.create_string_buffer(size)
        local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), size)
        remote = _IoVec(addr, size)
        self.reads += 1
        got = _process_vm_readv(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got != size:
            self.failed += 1
            return None
        return buf.raw

    def read_many(self, spans: list[tuple[int, int]]) -> list[bytes | None]:
        """The bytes of each (addr, size), None where any of them cannot be read, in as few
        system calls as the reads allow: process_vm_readv takes many remote ranges and
        transfers whole ones only, stopping at the first it cannot read (process_vm_readv(2):
        "won't perform a partial transfer that splits a single iovec element"), so the
        ranges after a failed one are asked for again in the next call."""
        out: list[bytes | None] = [None] * len(spans)
        todo = [i for i, (addr, size) in enumerate(spans) if _readable(addr, size)]
        while todo:
            batch = todo[:_IOV_MAX]
            sizes = [spans[i][1] for i in batch]
            # one local buffer for all of them; the remote ranges packed as struct iovec[]
            buf = ctypes.create_string_buffer(sum(sizes))
            local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), len(buf))
            remote = ctypes.create_string_buffer(struct.pack(
                f"<{2 * len(batch)}Q", *(v for i in batch for v in spans[i])))
            self.reads += 1
            got = _process_vm_readv(self.pid, ctypes.byref(local), 1,
                                    ctypes.cast(remote, ctypes.POINTER(_IoVec)), len(batch), 0)
            raw = buf.raw
            done = at = 0
            for i, size in zip(batch, sizes, strict=True):
                if got < at + size:
                    break
                out[i] = raw[at:at + size]
                at += size
                done += 1
            if done < len(batch):
                self.failed += 1
                done += 1  # the one that failed: None
            todo = todo[done:]
        return out

    def u64(self, addr: int) -> int | None:
        data = self.read(addr, 8)
        return None if data is None else struct.unpack("<Q", data)[0]

    def pointer(self, addr: int) -> int | None:
        """A pointer read from `addr`; None also for NULL and for values that cannot be user
        addresses (what a freed or reused object may hold)."""
        value = self.u64(addr)
        return value if value and value < USER_TOP else None
