"""A bounded on-disk queue of uploads the server did not take, delivered in order later.

One file per request, named by a growing sequence number, written atomically (temp file and
rename, so a crash leaves no half file). Files hold the non-secret query parameters and the
body only: credentials and extra headers are re-applied at send time. Each server/tenant pair
gets its own subdirectory so windows never go to a server they were not meant for. When the
spool would exceed its cap, the oldest files go first (the newest data is the most useful in
continuous profiling) and a warning says how many.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path

from recording.errors import OutputError
from uploader.client import IngestRequest

log = logging.getLogger("ebpf-upload")
SUFFIX = ".req"


class Spool:
    def __init__(self, base: Path, max_bytes: int, server: str, tenant: str | None) -> None:
        key = hashlib.sha256(f"{server}\0{tenant or ''}".encode()).hexdigest()[:16]
        self.dir = base / key
        self.max_bytes = max_bytes
        self.dropped = 0
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.dir / "server").write_text(f"{server} tenant={tenant or '-'}\n")
            self._lock = open(self.dir / ".lock", "w")  # noqa: SIM115 - held for our lifetime
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
        head = json.dumps({"params": list(req.params), "content_type": req.content_type})
        tmp = path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
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
            return IngestRequest(tuple((str(k), str(v)) for k, v in meta["params"]), body,
                                 str(meta.get("content_type", "binary/octet-stream")))
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
