"""Opening a file inside a profiled process's root without trusting that process's user.

The recorder runs as root and opens paths the process's user controls (its /tmp/perf-PID.map,
the path of a mapped binary). Three things must not happen:
- blocking: open(2) of a FIFO waits for a writer forever; O_NONBLOCK makes it return at once
  (fifo(7)), and the caller then refuses anything but a regular file after fstat;
- following a symlink out: /proc/PID/root/tmp/x with /tmp -> / or x -> /proc/kallsyms. Going
  through /proc/PID/root enters the process's root, but an *absolute* symlink met on the way
  is resolved against the recorder's root (the host's), and `..` may climb out of a chroot.
  openat2(2) with RESOLVE_IN_ROOT resolves every symlink and `..` as if the process's root
  were `/`, and RESOLVE_NO_MAGICLINKS refuses /proc/*/fd-style links; O_NOFOLLOW refuses a
  symlink as the last component;
- a controlling terminal: O_NOCTTY, in case the file is a tty device.
Kernels before 5.6 have no openat2: there the directories on the way are opened one by one
with O_NOFOLLOW, which refuses a symlinked directory instead of confining it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os

# include/uapi/linux/openat2.h
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
# openat2 has one number on every architecture (it was added after the syscall tables were
# unified in 5.1: include/uapi/asm-generic/unistd.h).
SYS_OPENAT2 = 437

READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_have_openat2: bool | None = None  # unknown until the first call


def _openat2(dirfd: int, path: str, flags: int) -> int:
    how = _OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how),
                       ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _walk_nofollow(dirfd: int, path: str, flags: int) -> int:
    """Without openat2: every directory on the way with O_NOFOLLOW, `..` refused."""
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise OSError(errno.EXDEV, "path leaves the process's root", path)
    fd = os.dup(dirfd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags, dir_fd=fd)
    finally:
        os.close(fd)


def open_in_root(pid: int, path: str, proc: str = "/proc", flags: int = READ_FLAGS) -> int:
    """An fd for `path` (absolute, as the process sees it) resolved inside /proc/PID/root.

    Raises OSError (ENOENT, ELOOP for a symlink as the last component, EXDEV for a way out of
    the root, ...). The caller must fstat the fd before reading it.
    """
    global _have_openat2
    root = os.open(f"{proc}/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rel = path.lstrip("/")
        if _have_openat2 is not False:
            try:
                fd = _openat2(root, rel, flags)
                _have_openat2 = True
                return fd
            except OSError as exc:
                # ENOSYS: kernel before 5.6; EPERM: a seccomp filter (older container
                # runtimes) refuses syscalls it does not know. The walk is stricter, so safe.
                if exc.errno == errno.ENOSYS:
                    _have_openat2 = False
                elif exc.errno != errno.EPERM:
                    raise
        return _walk_nofollow(root, rel, flags)
    finally:
        with contextlib.suppress(OSError):
            os.close(root)
