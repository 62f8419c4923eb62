"""Executable mappings through the PROCMAP_QUERY ioctl (Linux 6.11+), with a text fallback.

Reading /proc/PID/maps makes the kernel format every mapping of the process as text (~0.7 ms
for a Python process with 280 mappings), and we keep only the ~50 executable ones. The ioctl
(include/uapi/linux/fs.h, `struct procmap_query`, added in 6.11; blazesym uses it too) asks the
kernel for the next executable VMA directly, so it costs one syscall per mapping we keep.

This module knows nothing of recorder/procfs.py (which imports it): it returns each VMA's
fields in the order of procfs.Mapping, and procfs builds the Mappings.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

# start, end, perms, file offset, device "MAJ:MIN" (hex), inode, path: a /proc/PID/maps line
Vma = tuple[int, int, str, int, str, int, str]

PROCMAP_QUERY_VMA_READABLE = 0x01
PROCMAP_QUERY_VMA_WRITABLE = 0x02
PROCMAP_QUERY_VMA_EXECUTABLE = 0x04
PROCMAP_QUERY_VMA_SHARED = 0x08
PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10
NAME_MAX_BYTES = 4096


class ProcmapQuery(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint64),
        ("query_flags", ctypes.c_uint64),
        ("query_addr", ctypes.c_uint64),
        ("vma_start", ctypes.c_uint64),
        ("vma_end", ctypes.c_uint64),
        ("vma_flags", ctypes.c_uint64),
        ("vma_page_size", ctypes.c_uint64),
        ("vma_offset", ctypes.c_uint64),
        ("inode", ctypes.c_uint64),
        ("dev_major", ctypes.c_uint32),
        ("dev_minor", ctypes.c_uint32),
        ("vma_name_size", ctypes.c_uint32),
        ("build_id_size", ctypes.c_uint32),
        ("vma_name_addr", ctypes.c_uint64),
        ("build_id_addr", ctypes.c_uint64),
    ]


# _IOWR('f', 17, struct procmap_query): direction read|write (3) << 30, size << 16, type, nr.
PROCMAP_QUERY = (3 << 30) | (ctypes.sizeof(ProcmapQuery) << 16) | (ord("f") << 8) | 17


class Unsupported(Exception):
    """The kernel has no PROCMAP_QUERY (before 6.11): use the text of /proc/PID/maps."""


def query_exec_vmas(maps_path: str) -> list[Vma]:
    """Executable mappings of the process whose maps file is `maps_path`.

    Raises Unsupported where the ioctl does not exist (older kernels, or a file that is not
    procfs) - one failed syscall, so it is not cached - and OSError as reading the file would."""
    name = ctypes.create_string_buffer(NAME_MAX_BYTES)
    q = ProcmapQuery()
    out: list[Vma] = []
    fd = os.open(maps_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        addr = 0
        while True:
            q.size = ctypes.sizeof(ProcmapQuery)
            q.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA | PROCMAP_QUERY_VMA_EXECUTABLE
            q.query_addr = addr
            q.vma_name_size = NAME_MAX_BYTES
            q.vma_name_addr = ctypes.addressof(name)
            q.build_id_size = 0
            q.build_id_addr = 0
            try:
                fcntl.ioctl(fd, PROCMAP_QUERY, q)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    break  # no executable mapping at or after addr
                if exc.errno in (errno.ENOTTY, errno.EINVAL) and not out:
                    raise Unsupported from None
                raise
            f = q.vma_flags
            perms = ("r" if f & PROCMAP_QUERY_VMA_READABLE else "-") + (
                "w" if f & PROCMAP_QUERY_VMA_WRITABLE else "-") + "x" + (
                "s" if f & PROCMAP_QUERY_VMA_SHARED else "p")
            path = name.value.decode("utf-8", "replace") if q.vma_name_size else ""
            out.append((q.vma_start, q.vma_end, perms, q.vma_offset,
                        f"{q.dev_major:02x}:{q.dev_minor:02x}", q.inode, path))
            addr = q.vma_end
    finally:
        os.close(fd)
    return out
