"""A bounded on-disk queue of uploads the server did not take, delivered in order later.

One file per request, named by a growing sequence number, written atomically (temp file and
rename, so a crash leaves no half file). Files hold the non-secret query parameters and the
body only: credentials and extra headers are re-applied at send time. Each server/tenant pair
gets its own subdirectory so windows never go to a server they were not meant for. When the
spool would exceed its cap, the oldest files go first (the newest data is the most useful in
continuous profiling) and a warning says how many.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

from recording.errors import OutputError
from uploader.client import IngestRequest

log = logging.getLogger("ebpf-upload")
SUFFIX = ".req"


def _private_dirs(path: Path) -> None:
    """mkdir -p with every directory it creates 0700 (Path.mkdir(parents=True) makes the
    parents 0777 & ~umask): the spool holds process names and stacks of the whole host."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            os.mkdir(d, 0o700)


def _check_own_dir(path: Path) -> None:
    """The queue must be our own directory: requests found in it are sent with our
    credentials, so one planted by another user (or reached through a symlink) must not be."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"spool directory {path} is a symlink or not a directory; remove "
                          "it or choose another --spool-dir")
    if st.st_uid != os.geteuid():
        raise OutputError(f"spool directory {path} is owned by uid {st.st_uid}, not by this "
                          "user; choose another --spool-dir")
    if stat.S_IMODE(st.st_mode) != 0o700:  # left 0755 by an older version
        os.chmod(path, 0o700)


def _private_file(path: Path, flags: int) -> BinaryIO:
    """Open (creating) a file 0600, never through a symlink; one left wider is tightened."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "r+b" if flags & os.O_RDWR else "wb")


class Spool:
    def __init__(self, base: Path, max_bytes: int, server: str, tenant: str | None) -> None:
        key = hashlib.sha256(f"{server}\0{tenant or ''}".encode()).hexdigest()[:16]
        self.dir = base / key
        self.max_bytes = max_bytes
        self.dropped = 0
        try:
            _private_dirs(self.dir)
            _check_own_dir(self.dir)
            with _private_file(self.dir / "server", os.O_WRONLY | os.O_TRUNC) as f:
                f.write(f"{server} tenant={tenant or '-'}\n".encode())
            self._lock = _private_file(self.dir / ".lock", os.O_RDWR)
        except OSError as exc:
            raise OutputError(f"cannot use spool directory {self.dir}: {exc.strerror}; "
                              "choose another with --spool-dir") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"another ebpf-upload uses the spool {self.dir} for the same "
                              "server; give this one its own --spool-dir") from None
        self._seq = max((self._num(p) for p in self.files()), default=0)

    @staticmethod
    def _num(p: Path) -> int:
        try:
            return int(p.stem)
        except ValueError:
            return 0

    def files(self) -> list[Path]:
        return sorted((p for p in self.dir.glob("*" + SUFFIX)), key=self._num)

    def __len__(self) -> int:
        return len(self.files())

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def put(self, req: IngestRequest, *, rejected: bool = False) -> None:
        """Queue req; with rejected=True keep it aside (refused by the server) instead."""
        self._seq += 1
        where = self.dir / "rejected" if rejected else self.dir
        where.mkdir(exist_ok=True, mode=0o700)
        path = where / f"{self._seq:012d}{SUFFIX}"
        head = json.dumps({"params": list(req.params), "content_type": req.content_type,
                           "protocol": req.protocol})
        tmp = path.with_suffix(".tmp")
        try:
            with _private_file(tmp, os.O_WRONLY | os.O_TRUNC) as f:
                f.write(head.encode() + b"\n" + req.body)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write to the spool %s (%s); window %s is lost",
                      self.dir, exc.strerror, req.describe())
            return
        if not rejected:
            self._enforce_cap()

    def _enforce_cap(self) -> None:
        files = self.files()
        sizes = {p: p.stat().st_size for p in files}
        total = sum(sizes.values())
        dropped: list[Path] = []
        while total > self.max_bytes and files:
            p = files.pop(0)
            total -= sizes[p]
            dropped.append(p)
        if dropped:
            first, last = self.read(dropped[0]), self.read(dropped[-1])
            for p in dropped:
                p.unlink(missing_ok=True)
            self.dropped += len(dropped)
            log.warning("spool full (cap %d bytes, --spool-max-bytes): dropped the %d oldest "
                        "window upload(s), from %s to %s",
                        self.max_bytes, len(dropped), first.param("from") if first else "?",
                        last.param("until") if last else "?")

    def read(self, path: Path) -> IngestRequest | None:
        try:
            data = path.read_bytes()
            head, _, body = data.partition(b"\n")
            meta = json.loads(head)
            protocol = str(meta.get("protocol", "ingest"))  # files of older versions: ingest
            if protocol not in ("ingest", "push"):
                return None
            return IngestRequest(tuple((str(k), str(v)) for k, v in meta["params"]), body,
                                 str(meta.get("content_type", "binary/octet-stream")),
                                 protocol)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def oldest(self) -> tuple[Path, IngestRequest] | None:
        for p in self.files():
            req = self.read(p)
            if req is not None:
                return p, req
            log.warning("unreadable spool file %s set aside", p)
            self.set_aside(p)
        return None

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def set_aside(self, path: Path) -> None:
        """Keep a request the server refused for good out of the queue, for inspection."""
        rejected = self.dir / "rejected"
        rejected.mkdir(exist_ok=True, mode=0o700)
        os.replace(path, rejected / path.name)
