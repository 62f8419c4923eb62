"""A debuginfod client: GET {server}/buildid/{BUILD_ID}/debuginfo, cached on disk.

The protocol is elfutils' (debuginfod(8)): a server answers 200 with the debug file or 404.
Downloads go to {cache}/debuginfod/{build_id}/debuginfo (written to a temporary name, then
renamed), so a second run never downloads again. A server that cannot be reached is marked
down for the rest of the run: one timeout, not one per object. The caller checks the build ID
of what arrives; nothing downloaded is executed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from recording.buildid import build_id_problem, is_build_id

MAX_DOWNLOAD = 4 << 30


class DebuginfodClient:
    def __init__(self, urls: tuple[str, ...], cache_dir: str | None, timeout_s: float) -> None:
        self.urls = urls
        self.cache_dir = cache_dir
        self.timeout_s = timeout_s
        self._down: dict[str, str] = {}
        # requests is imported on first use: most runs never contact a server, and its
        # import costs more than a warm symbolization of a small recording.
        import requests

        self._requests = requests
        self._session = requests.Session()

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
        try:
            resp = self._session.get(f"{url}/buildid/{build_id}/debuginfo",
                                     timeout=self.timeout_s, stream=True)
        except requests.RequestException as exc:
            why = f"debuginfod {url} unreachable ({type(exc).__name__})"
            self._down[url] = why
            return None, why
        with resp:
            if resp.status_code == 404:
                return None, f"debuginfod {url} has no debug file for {build_id}"
            if resp.status_code != 200:
                return None, f"debuginfod {url} answered HTTP {resp.status_code}"
            if dest is None:
                dest = os.path.join(tempfile.mkdtemp(prefix="ebpf-symbolize-"), "debuginfo")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".part-")
            total = 0
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in resp.iter_content(1 << 20):
                        total += len(chunk)
                        if total > MAX_DOWNLOAD:
                            raise OSError("download larger than the limit")
                        out.write(chunk)
                os.replace(tmp, dest)
            except (OSError, requests.RequestException) as exc:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                return None, f"debuginfod {url}: download failed ({type(exc).__name__})"
        return dest, None

    def discard(self, path: str) -> None:
        """Drop a cached download that turned out unusable (wrong build ID, not ELF)."""
        with contextlib.suppress(OSError):
            os.unlink(path)
