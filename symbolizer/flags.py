"""The flags that say where symbols come from, shared by `ebpf-symbolize` and by
`ebpf-upload RECORDING` (which symbolizes through this library): one set of click options, one
SymbolizeOptions from either command's flags."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from cli_common.flags import ListType, option
from recording.errors import UsageError
from symbolizer.options import (
    DEFAULT_DEBUG_DIRS,
    DEFAULT_SYMBOL_CACHE_SIZE,
    SymbolizeOptions,
    debuginfod_limits_from_env,
    debuginfod_urls_from_env,
    default_cache_dir,
)

# Both commands mean the same by these, so their twins have no command in their name
# (PYROSCOPE_SYSROOT configures ebpf-symbolize and ebpf-upload alike).
_SYMBOL_OPTIONS = [
    option("--debug-dir", "debug_dirs", multiple=True, type=ListType(os.pathsep, "DIR"),
           help="directory with a .build-id/xx/rest.debug tree, searched before "
           "/usr/lib/debug (repeatable; the variable: a :-separated list, as gdb's "
           "debug-file-directory)"),
    option("--no-default-debug-dir", is_flag=True,
           help="do not search /usr/lib/debug (only the --debug-dir ones)"),
    option("--sysroot", metavar="DIR",
           help="look recorded paths up under this root (an unpacked container image or a "
           "copy of another machine's files)"),
    option("--debuginfod-url", "debuginfod_urls", multiple=True, type=ListType(None, "URL"),
           help="debuginfod server (repeatable; default: $DEBUGINFOD_URLS); each download is "
           "limited to $DEBUGINFOD_MAXTIME seconds (120) and $DEBUGINFOD_MAXSIZE bytes (4 GiB)"),
    option("--cache-dir", metavar="DIR",
           help="symbol cache directory (default $XDG_CACHE_HOME/ebpf-profiler)"),
    option("--symbol-cache-size", type=int, default=DEFAULT_SYMBOL_CACHE_SIZE,
           show_default=True, metavar="N",
           help="objects kept in memory (as pyroscope ebpf's --symbol-cache-size)"),
]


def symbol_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command with the flags that say where symbols come from."""
    for decorate in reversed(_SYMBOL_OPTIONS):
        f = decorate(f)
    return f


def debug_dirs_from_args(a: Any) -> tuple[str, ...]:
    """--debug-dir adds to the default list, first; the distribution's debug packages
    (libc6-dbg in /usr/lib/debug) still name what the given directories lack."""
    given = tuple(a.debug_dirs or ())
    defaults = () if a.no_default_debug_dir else tuple(
        d for d in DEFAULT_DEBUG_DIRS if d not in given)
    return given + defaults


def options_from_args(a: Any, *, lines: bool = False,
                      per_process: bool = False) -> SymbolizeOptions:
    """SymbolizeOptions from the parsed flags of symbol_options (attributes of `a`)."""
    size = a.symbol_cache_size
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
