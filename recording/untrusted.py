"""Files and paths that other users or other hosts control.

The symbolizer runs as root and opens paths that come from a recording: the binary of a
process (which its owner may have deleted and replaced), debug files named after it, files
under a `--sysroot`. Any of them may have become a FIFO (open() blocks until a writer comes,
read() until it writes: the symbolizer, and the continuous chain behind it, would hang), a
device (opening a tape or watchdog device acts), or a symlink to a root-only file.

`open_regular` is the one way to open such a file for reading: it never opens anything but a
regular file and never blocks in open(); `resolve_in_root` maps a recorded path under a
sysroot the way chroot(2) (or openat2's RESOLVE_IN_ROOT) would, so neither `..` nor an
absolute symlink leaves the root. `recorded_path_problem` rejects paths the kernel could not
have recorded, and `printable` escapes untrusted text before it reaches a terminal.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

# Linux follows at most 40 symlinks in one lookup (MAXSYMLINKS, fs/namei.c); so do we.
MAX_SYMLINKS = 40

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


class UntrustedFileError(OSError):
    """A path that is not opened: not a regular file, a refused symlink, a bad name."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(errno.EPERM, why, path)
        self.why = why

    def __str__(self) -> str:
        return self.why


def _refuse_unless_regular(path: str, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise UntrustedFileError(path, "a symbolic link: refused")
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise UntrustedFileError(path, f"{kind}, not a regular file: refused")


def open_regular(path: str, *, follow_symlinks: bool = True) -> BinaryIO:
    """Open `path` for reading if it is a regular file; raise OSError (UntrustedFileError
    when it is something else) without blocking.

    A stat() first keeps devices from being opened (but for a swap racing it, which the
    fstat below still refuses, with nothing read); O_NONBLOCK keeps open() of a FIFO
    swapped in after that stat from waiting for a writer (Linux open(2): with O_NONBLOCK a
    read-only open of a FIFO returns at once), and fstat() of what was opened is the check
    that counts. O_NOCTTY: a terminal swapped in never becomes our controlling terminal.
    follow_symlinks=False adds O_NOFOLLOW, for paths whose last component the kernel recorded
    as it was resolved (/proc/PID/maps shows no symlinks), so a symlink there was put there
    afterwards."""
    try:
        st = os.stat(path) if follow_symlinks else os.lstat(path)
    except ValueError:  # an embedded NUL: no file has that name
        raise UntrustedFileError(path, "a name with a NUL byte: refused") from None
    _refuse_unless_regular(path, st.st_mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise UntrustedFileError(path, "a symbolic link: refused") from None
        raise
    try:
        _refuse_unless_regular(path, os.fstat(fd).st_mode)
        # Regular files ignore O_NONBLOCK for reads; clear it so nothing depends on that.
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size


def recorded_path_problem(path: str) -> str | None:
    """Why `path` cannot be a file path as the kernel records one (/proc/PID/maps, d_path):
    those are absolute, canonical (no `.` or `..` components, no empty ones) and NUL-free.
    None when it could be."""
    if not path.startswith("/"):
        return "not an absolute path"
    if "\0" in path:
        return "contains a NUL byte"
    if any(part in (".", "..") for part in path.split("/")):
        return "has . or .. components"
    return None


def resolve_in_root(root: str, path: str) -> str:
    """The path of `path` inside the directory tree `root`, resolved as if `root` were `/`:
    `..` stops at the root and absolute symlinks restart from the root, so the result never
    lies outside it. Every component of the result but a missing tail exists under the root
    and is no symlink, so it can be opened with O_NOFOLLOW. A root whose files change while
    this runs (a live container's) can race it; an unpacked image cannot."""
    base = os.path.realpath(root)
    done: list[str] = []
    todo = [p for p in reversed(path.split("/")) if p]
    hops = 0
    while todo:
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(base, *done, name)
        try:
            st = os.lstat(here)
        except ValueError:
            raise UntrustedFileError(path, "a name with a NUL byte: refused") from None
        except OSError:
            done.append(name)  # missing (or unreadable): the open that follows says so
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many symbolic links", path)
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo.extend(p for p in reversed(target.split("/")) if p)
            continue
        done.append(name)
    return os.path.join(base, *done)


def printable(text: str, limit: int = 300) -> str:
    """`text` with control and other non-printable characters escaped (\\x1b, \\n, ...),
    shortened to `limit` characters: recorded paths and names reach terminals through
    reports, and must not move the cursor, retitle the window or fake a line."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
