"""The flags that say where symbols come from, shared by `ebpf-symbolize` and by
`ebpf-upload RECORDING` (which symbolizes through this library): one SymbolizeOptions from
either command's flags."""

from __future__ import annotations

import argparse
import os

from recording.errors import UsageError
from symbolizer.options import (
    DEFAULT_DEBUG_DIRS,
    DEFAULT_SYMBOL_CACHE_SIZE,
    SymbolizeOptions,
    debuginfod_limits_from_env,
    debuginfod_urls_from_env,
    default_cache_dir,
)


def add_symbol_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("symbols (for a recording)")
    g.add_argument("--debug-dir", action="append", dest="debug_dirs", metavar="DIR",
                   help="directory with a .build-id/xx/rest.debug tree, searched before "
                        "/usr/lib/debug (repeatable; as gdb's debug-file-directory list)")
    g.add_argument("--no-default-debug-dir", action="store_true",
                   help="do not search /usr/lib/debug (only the --debug-dir ones)")
    g.add_argument("--sysroot", help="look recorded paths up under this root (an unpacked "
                                     "container image or a copy of another machine's files)")
    g.add_argument("--debuginfod-url", action="append", dest="debuginfod_urls", metavar="URL",
                   help="debuginfod server (repeatable; default: $DEBUGINFOD_URLS); each "
                        "download is limited to $DEBUGINFOD_MAXTIME seconds (120) and "
                        "$DEBUGINFOD_MAXSIZE bytes (4 GiB)")
    g.add_argument("--cache-dir", default=None,
                   help="symbol cache directory (default $XDG_CACHE_HOME/ebpf-profiler)")
    g.add_argument("--symbol-cache-size", type=int, default=None,
                   help="objects kept in memory (default 256, env PYROSCOPE_SYMBOL_CACHE_SIZE)")


def debug_dirs_from_args(a: argparse.Namespace) -> tuple[str, ...]:
    """--debug-dir adds to the default list, first; the distribution's debug packages
    (libc6-dbg in /usr/lib/debug) still name what the given directories lack."""
    given = tuple(a.debug_dirs or ())
    defaults = () if a.no_default_debug_dir else tuple(
        d for d in DEFAULT_DEBUG_DIRS if d not in given)
    return given + defaults


def options_from_args(a: argparse.Namespace, *, lines: bool = False,
                      per_process: bool = False) -> SymbolizeOptions:
    size = a.symbol_cache_size
    if size is None:
        env = os.environ.get("PYROSCOPE_SYMBOL_CACHE_SIZE")
        try:
            size = int(env) if env else DEFAULT_SYMBOL_CACHE_SIZE
        except ValueError:
            raise UsageError(f"PYROSCOPE_SYMBOL_CACHE_SIZE={env!r} is not a number") from None
    if size < 1:
        raise UsageError("--symbol-cache-size must be at least 1")
    try:
        limits = debuginfod_limits_from_env()
    except ValueError as exc:
        raise UsageError(f"{exc}; unset it or give seconds (MAXTIME) or bytes (MAXSIZE)"
                         ) from None
    return SymbolizeOptions(
        debug_dirs=debug_dirs_from_args(a),
        sysroot=a.sysroot,
        debuginfod_urls=tuple(a.debuginfod_urls) if a.debuginfod_urls
        else debuginfod_urls_from_env(),
        cache_dir=a.cache_dir or default_cache_dir(),
        symbol_cache_size=size,
        lines=lines,
        per_process=per_process,
        **limits,  # type: ignore[arg-type]
    )
