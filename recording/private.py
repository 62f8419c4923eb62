"""Directories only we may read: 0700, as perf keeps ~/.debug and perf.data private.

Caches and spools hold what was read as root (symbols of root-only binaries, addresses of
the host's processes); `os.makedirs(mode=0o700)` is not enough, because Python creates the
intermediate directories with the default mode (0777 less the umask, usually 0755).
"""

from __future__ import annotations

import os
import stat

PRIVATE_DIR = 0o700


def make_private_dirs(path: str, *, tighten: bool = True) -> None:
    """Create `path` and any missing parents with mode 0700. With `tighten`, an existing
    `path` that we own but that others may enter (made by an older version, or under a
    permissive umask) is narrowed to 0700 too; parents that existed are left alone."""
    missing: list[str] = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR)
        except FileExistsError:
            if not os.path.isdir(d):
                raise
    if tighten and not missing:
        st = os.stat(path)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & PRIVATE_DIR)
