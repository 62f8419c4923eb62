"""A debuginfod client: GET {server}/buildid/{BUILD_ID}/debuginfo, cached on disk.

The protocol is elfutils' (debuginfod(8)): a server answers 200 with the debug file or 404.
Downloads go to {cache}/debuginfod/{build_id}/debuginfo (written to a temporary name, then
renamed), so a second run never downloads again. A server that cannot be reached, or that
stalls a download, is marked down for the rest of the run: one wait, not one per object. The
caller checks the build ID of what arrives; nothing downloaded is executed.

A server is untrusted as well: a read timeout alone bounds nothing (a server sending one byte
every few seconds never trips it), so each download also has a wall-clock limit and a size
limit, as elfutils has with DEBUGINFOD_MAXTIME and DEBUGINFOD_MAXSIZE (the same variables set
ours). Redirects are followed only within the server's origin (scheme, host, port): another
host was never configured, and following one is how a request ends up somewhere it should not.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from recording.buildid import build_id_problem, is_build_id
from recording.private import make_private_dirs

if TYPE_CHECKING:
    import requests

MAX_REDIRECTS = 5
_CHUNK = 1 << 20


class _Refused(Exception):
    """A download given up on; the message is the reason, `down` marks the server down."""

    def __init__(self, why: str, *, down: bool = False) -> None:
        super().__init__(why)
        self.down = down


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urlsplit(url)
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return u.scheme, (u.hostname or "").lower(), port


class DebuginfodClient:
    def __init__(self, urls: tuple[str, ...], cache_dir: str | None, timeout_s: float,
                 max_time_s: float = 120.0, max_size: int = 4 << 30) -> None:
        """timeout_s: for connecting and for each read; max_time_s: for a whole download
        (its last read may take up to timeout_s longer); max_size: bytes of one file."""
        self.urls = urls
        self.cache_dir = cache_dir
        self.timeout_s = timeout_s
        self.max_time_s = max_time_s
        self.max_size = max_size
        self._down: dict[str, str] = {}
        self._tmp: str | None = None  # without a cache dir: one private directory per run
        # requests is imported on first use: most runs never contact a server, and its
        # import costs more than a warm symbolization of a small recording.
        import requests
        import urllib3.exceptions

        self._requests = requests
        self._urllib3_error = urllib3.exceptions.HTTPError
        self._session = requests.Session()
        # No Content-Encoding: a gzip body would be one more decompression to bound, and
        # debuginfod serves files as they are.
        self._session.headers["Accept-Encoding"] = "identity"

    def cached_path(self, build_id: str) -> str | None:
        if self.cache_dir is None or not is_build_id(build_id):
            return None
        return os.path.join(self.cache_dir, "debuginfod", build_id, "debuginfo")

    def fetch(self, build_id: str) -> tuple[str | None, str | None]:
        """(path of the debug file, None) or (None, why not)."""
        problem = build_id_problem(build_id)
        if problem:  # it would become a URL path and a cache path
            return None, f"not a build ID ({problem})"
        cached = self.cached_path(build_id)
        if cached and os.path.exists(cached):
            return cached, None
        problems = []
        for url in self.urls:
            if url in self._down:
                problems.append(self._down[url])
                continue
            path, problem = self._fetch_one(url.rstrip("/"), build_id, cached)
            if path:
                return path, None
            problems.append(problem or "")
        return None, "; ".join(p for p in problems if p) or "no debuginfod server configured"

    def _fetch_one(self, url: str, build_id: str, dest: str | None
                   ) -> tuple[str | None, str | None]:
        requests = self._requests
        deadline = time.monotonic() + self.max_time_s
        try:
            resp = self._get(f"{url}/buildid/{build_id}/debuginfo", url, deadline)
            with resp:
                if resp.status_code == 404:
                    return None, f"debuginfod {url} has no debug file for {build_id}"
                if resp.status_code != 200:
                    return None, f"debuginfod {url} answered HTTP {resp.status_code}"
                return self._save(resp, dest or self._scratch(build_id), deadline), None
        except _Refused as exc:
            why = f"debuginfod {url}: {exc}"
            if exc.down:
                self._down[url] = why
            return None, why
        except requests.RequestException as exc:
            why = f"debuginfod {url} unreachable ({type(exc).__name__})"
            self._down[url] = why
            return None, why
        except self._urllib3_error as exc:  # from reading the body (resp.raw)
            why = f"debuginfod {url}: download failed ({type(exc).__name__})"
            self._down[url] = why
            return None, why
        except OSError as exc:
            return None, f"debuginfod {url}: cannot store the download ({exc.strerror})"

    def _get(self, target: str, base: str, deadline: float) -> requests.Response:
        """The response for target, following redirects within base's origin only."""
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._session.get(target, timeout=self.timeout_s, stream=True,
                                     allow_redirects=False)
            if not resp.is_redirect:
                return resp
            location = resp.headers.get("location", "")
            resp.close()
            nxt = urljoin(target, location)
            if _origin(nxt) != _origin(base):
                where = "{}://{}:{}".format(*_origin(nxt))
                raise _Refused(f"redirected to another host ({where}); not followed: give "
                               "that server's URL with --debuginfod-url if it is trusted")
            if time.monotonic() > deadline:
                raise _Refused(f"no answer within {self.max_time_s:g} s (DEBUGINFOD_MAXTIME)",
                               down=True)
            target = nxt
        raise _Refused(f"more than {MAX_REDIRECTS} redirects")

    def _scratch(self, build_id: str) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="ebpf-symbolize-")  # 0700
        return os.path.join(self._tmp, build_id)

    def _save(self, resp: requests.Response, dest: str, deadline: float) -> str:
        encoding = resp.headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            raise _Refused(f"sent Content-Encoding {encoding[:40]!r}, which was not asked for")
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_size:
            raise _Refused(f"debug file of {int(declared)} bytes is too large (limit "
                           f"{self.max_size}, DEBUGINFOD_MAXSIZE)")
        if self.cache_dir:
            make_private_dirs(os.path.join(self.cache_dir, "debuginfod"))
        make_private_dirs(os.path.dirname(dest))  # 0700; mkstemp makes the file 0600
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".part-")
        total = 0
        try:
            with os.fdopen(fd, "wb") as out:
                # read1: at most one read of the socket per call, so the deadline is checked
                # whenever any bytes arrive, however few (read(n) waits for all n).
                while chunk := resp.raw.read1(_CHUNK):
                    total += len(chunk)
                    if total > self.max_size:
                        raise _Refused(f"download larger than {self.max_size} bytes: too "
                                       "large (DEBUGINFOD_MAXSIZE)")
                    if time.monotonic() > deadline:
                        raise _Refused(f"download not done within {self.max_time_s:g} s "
                                       f"({total} bytes; DEBUGINFOD_MAXTIME)", down=True)
                    out.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return dest

    def discard(self, path: str) -> None:
        """Drop a cached download that turned out unusable (wrong build ID, not ELF)."""
        with contextlib.suppress(OSError):
            os.unlink(path)
