"""Options of a symbolization run, shared by the library API and the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DEBUG_DIRS = ("/usr/lib/debug",)
DEFAULT_SYMBOL_CACHE_SIZE = 256  # objects kept in memory, as Pyroscope's --symbol-cache-size


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ebpf-profiler")


def debuginfod_urls_from_env() -> tuple[str, ...]:
    # elfutils reads DEBUGINFOD_URLS as a space-separated list of server URLs.
    return tuple(u for u in os.environ.get("DEBUGINFOD_URLS", "").split() if u)


def debuginfod_limits_from_env() -> dict[str, float | int]:
    """DEBUGINFOD_MAXTIME (seconds) and DEBUGINFOD_MAXSIZE (bytes), as elfutils' client
    reads them; only those set, as SymbolizeOptions fields. ValueError names a bad one."""
    out: dict[str, float | int] = {}
    for var, key, kind in (("DEBUGINFOD_MAXTIME", "debuginfod_max_time_s", float),
                           ("DEBUGINFOD_MAXSIZE", "debuginfod_max_size", int)):
        raw = os.environ.get(var, "").strip()
        if not raw:
            continue
        try:
            value = kind(raw)
        except ValueError:
            value = 0
        if not value > 0 or value == float("inf"):
            raise ValueError(f"{var}={raw!r} is not a positive number")
        out[key] = value
    return out


@dataclass(frozen=True)
class SymbolizeOptions:
    """Where and how symbols are looked up, from the flags of ebpf-symbolize."""

    debug_dirs: tuple[str, ...] = DEFAULT_DEBUG_DIRS  # searched as DIR/.build-id/xx/rest.debug
    sysroot: str | None = None  # recorded paths are looked up under it (another machine's root)
    debuginfod_urls: tuple[str, ...] = ()
    debuginfod_timeout_s: float = 10.0  # to connect, and for each read
    debuginfod_max_time_s: float = 120.0  # for one whole download (DEBUGINFOD_MAXTIME)
    debuginfod_max_size: int = 4 << 30  # bytes of one download (DEBUGINFOD_MAXSIZE)
    cache_dir: str | None = field(default_factory=default_cache_dir)  # None: no disk cache
    symbol_cache_size: int = DEFAULT_SYMBOL_CACHE_SIZE
    lines: bool = False  # file:line and inlined frames from DWARF (symbolizer/lines.py)
    per_process: bool = False  # Profiles also count by (pid, comm): for --format parquet
