"""ebpf-symbolize FILE|- : a recording in, named stacks out (folded by default)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from cli_common.argparser import ArgumentParser
from cli_common.command import is_terminal, run
from cli_common.timeparse import parse_duration
from discovery.discovery import Discovery
from discovery.settings import discovery_for
from profiles.model import Profile
from recording.errors import ProfilerError, RecordingFormatError, UsageError
from recording.reader import iter_batches
from symbolizer.engine import STREAM_FORGET_AFTER_NS, Engine
from symbolizer.options import (
    DEFAULT_DEBUG_DIRS,
    DEFAULT_SYMBOL_CACHE_SIZE,
    SymbolizeOptions,
    debuginfod_limits_from_env,
    debuginfod_urls_from_env,
    default_cache_dir,
)
from symbolizer.output import Output
from symbolizer.resolve import load_lines_fn
from symbolizer.sinks import SinkOptions, get_sink
from symbolizer.windows import OutputWindows, WindowPlan

PROG = "ebpf-symbolize"
def parse_duration_ns(text: str) -> int:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise UsageError(f"bad duration {text!r}; use e.g. 10s, 500ms, 1m")
    return round(seconds * 1e9)


@dataclass(frozen=True)
class TimeBound:
    """--from/--until: Unix seconds, an ISO 8601 time, or +DURATION from the recording start."""

    absolute_ns: int | None = None
    offset_ns: int | None = None

    def resolve(self, start_ns: int) -> int:
        return self.absolute_ns if self.absolute_ns is not None else start_ns + (
            self.offset_ns or 0)


def parse_time(text: str, flag: str) -> TimeBound:
    if text.startswith("+"):
        return TimeBound(offset_ns=parse_duration_ns(text[1:]))
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        # 19 digits are nanoseconds, as Pyroscope reads from/until; else seconds.
        return TimeBound(absolute_ns=int(value) if value >= 1e17 else int(value * 1e9))
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"bad {flag} {text!r}; give Unix seconds, an ISO time (2025-01-31T12:00:00Z) "
            "or +10s from the recording start") from None
    if t.tzinfo is None:
        t = t.astimezone()
    return TimeBound(absolute_ns=int(t.timestamp() * 1e9))


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Symbolize an ebpf-record recording offline: named stacks as folded text "
                    "(default) or another --format. Never runs code from the files it reads.")
    p.add_argument("recording", help="recording file (Parquet or Arrow stream), or - for stdin")
    p.add_argument("--format", default="folded",
                   help="output format: folded (default), pprof, speedscope, html, parquet")
    p.add_argument("--out", default="-", help="output file (default: stdout); replaced "
                                              "only once the run completes")
    p.add_argument("--debug-dir", action="append", dest="debug_dirs", metavar="DIR",
                   help="directory with a .build-id/xx/rest.debug tree, searched before "
                        "/usr/lib/debug (repeatable; as gdb's debug-file-directory list)")
    p.add_argument("--no-default-debug-dir", action="store_true",
                   help="do not search /usr/lib/debug (only the --debug-dir ones)")
    p.add_argument("--sysroot", help="look recorded paths up under this root (an unpacked "
                                     "container image or a copy of another machine's files)")
    p.add_argument("--debuginfod-url", action="append", dest="debuginfod_urls", metavar="URL",
                   help="debuginfod server (repeatable; default: $DEBUGINFOD_URLS); each "
                        "download is limited to $DEBUGINFOD_MAXTIME seconds (120) and "
                        "$DEBUGINFOD_MAXSIZE bytes (4 GiB)")
    p.add_argument("--cache-dir", default=None,
                   help="symbol cache directory (default $XDG_CACHE_HOME/ebpf-profiler)")
    p.add_argument("--symbol-cache-size", type=int, default=None,
                   help="objects kept in memory (default 256, env PYROSCOPE_SYMBOL_CACHE_SIZE)")
    p.add_argument("--from", dest="from_", metavar="TIME",
                   help="first time to include: Unix seconds, ISO time, or +DURATION")
    p.add_argument("--until", metavar="TIME", help="end of the time to include (exclusive)")
    p.add_argument("--window", metavar="DURATION",
                   help="split output into windows of this length (e.g. 10s)")
    p.add_argument("--lines", action="store_true",
                   help="add file:line and inlined frames from DWARF")
    p.add_argument("--kubernetes-node", metavar="NAME", default=None,
                   help="label each process with its pod, listing the pods of this node with "
                        "the in-cluster service account (env PYROSCOPE_KUBERNETES_NODE); "
                        "without it, processes are labelled by container ID or systemd unit")
    p.add_argument("--only-services", action="store_const", const=True, default=None,
                   help="drop processes discovery cannot place in a pod, container or "
                        "systemd unit (env PYROSCOPE_ONLY_SERVICES=true)")
    return p


def discovery_from_args(a: argparse.Namespace) -> Discovery:
    return discovery_for(PROG, a.kubernetes_node, a.only_services)


def debug_dirs_from_args(a: argparse.Namespace) -> tuple[str, ...]:
    """--debug-dir adds to the default list, first; the distribution's debug packages
    (libc6-dbg in /usr/lib/debug) still name what the given directories lack."""
    given = tuple(a.debug_dirs or ())
    defaults = () if a.no_default_debug_dir else tuple(
        d for d in DEFAULT_DEBUG_DIRS if d not in given)
    return given + defaults


def options_from_args(a: argparse.Namespace) -> SymbolizeOptions:
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
        lines=a.lines,
        per_process=a.format == "parquet",  # the one format with pid and comm columns
        **limits,  # type: ignore[arg-type]
    )


class Progress:
    """A one-line status on a terminal (stderr); silent when stderr is piped."""

    def __init__(self) -> None:
        self.enabled = is_terminal()
        self._last = 0.0

    def update(self, engine: Engine, batches: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        sys.stderr.write(f"\r{PROG}: {batches} batches, {engine.windows_closed} windows, "
                         f"{engine.total_samples} samples, "
                         f"{engine.resolver.cache.parsed} objects parsed\x1b[K")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\r\x1b[K")


def symbolize_main(argv: list[str], *, discovery: Discovery | None = None) -> int:
    """The command. `discovery`: one made by the caller (e.g. with an explicit API client
    configuration) instead of the one --kubernetes-node / --only-services describe."""
    a = build_parser().parse_args(argv)  # bad flags: UsageError, one line
    sink_cls = get_sink(a.format)  # unknown formats fail before any work
    options = options_from_args(a)
    lines_fn = None
    if options.lines:
        lines_fn = load_lines_fn()
        if lines_fn is None:
            raise UsageError("--lines needs symbolizer/lines.py, which this installation "
                             "lacks; run without --lines")
    stream = a.recording == "-"
    from_b = parse_time(a.from_, "--from") if a.from_ else None
    until_b = parse_time(a.until, "--until") if a.until else None
    span = parse_duration_ns(a.window) if a.window else None

    if discovery is None:
        discovery = discovery_from_args(a)
    engine = Engine(options, lines_fn, labeler=discovery.labels_for,
                    forget_after_ns=STREAM_FORGET_AFTER_NS if stream else None)
    if stream and sys.stdin is None:  # started with fd 0 closed (`<&-`)
        raise UsageError("stdin is closed: nothing to read; pipe `ebpf-record --out -` in "
                         "or give a recording file")
    output = Output(a.out, a.recording)  # --out FILE is replaced only at the end
    sink = sink_cls(output.stream, SinkOptions(stream=stream, lines=options.lines))
    progress = Progress()
    grouper: OutputWindows | None = None
    written = 0

    def write(windows: list[list[Profile]]) -> None:
        nonlocal written
        for window in windows:
            for p in window:
                sink.write_profile(p)
            sink.end_window()
            written += 1

    def emit(drains: list[list[Profile]]) -> None:
        nonlocal grouper
        for drain in drains:
            if grouper is None:
                start = _recording_start(engine, drain[0])
                grouper = OutputWindows(WindowPlan(
                    span, from_b.resolve(start) if from_b else None,
                    until_b.resolve(start) if until_b else None,
                    per_drain=stream or sink_cls.per_drain_windows))
            write(grouper.add(drain))

    stopping = _StopOnSignal() if stream else None
    # The output stream was taken above; whatever a library prints from here on goes to
    # stderr, so `--format pprof > x.pprof` holds nothing but the profile.
    quiet = contextlib.redirect_stdout(sys.stderr)
    quiet.__enter__()
    try:
        for batches, closed in enumerate(_drive(engine, a.recording, stream), 1):
            emit(closed)
            progress.update(engine, batches)
        emit(engine.finish())
        if grouper is not None:
            write(grouper.finish())
        sink.close()
        if written == 0 and engine.windows_closed == 0:
            raise ProfilerError(f"{a.recording} holds no samples or windows: nothing to "
                                "symbolize (was the recorder stopped before its first drain?)")
        output.commit()
    except RecordingFormatError:
        if stopping is not None and stopping.forced:
            raise KeyboardInterrupt from None  # the read was cut short on purpose
        raise
    finally:
        quiet.__exit__(None, None, None)
        if stopping is not None:
            stopping.restore()
        progress.done()
        output.discard()  # after a failure: --out FILE stays as it was (no-op once committed)
    sys.stderr.write(engine.report.render(engine.total_samples))
    if engine.dropped_samples:
        sys.stderr.write(_dropped_line(engine, discovery))
    return 0


class _StopOnSignal:
    """Ctrl-C or SIGTERM reaches every command of `ebpf-record --out - | ebpf-symbolize - |
    ebpf-upload -` at once. Dying at once would lose the recorder's last window, which it is
    about to write: keep reading until it closes the pipe, for up to GRACE_SECONDS; a second
    signal stops at once."""

    GRACE_SECONDS = 5

    def __init__(self) -> None:
        self.forced = False
        self.signalled = False
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        self._old_alarm = signal.signal(signal.SIGALRM, self._force)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signalled:
            self._force(signum, _frame)
        self.signalled = True
        print(f"{PROG}: {signal.Signals(signum).name}: finishing the last window from the "
              f"recorder (up to {self.GRACE_SECONDS} s; again to stop now)", file=sys.stderr)
        signal.alarm(self.GRACE_SECONDS)

    def _force(self, _signum: int, _frame: object) -> None:
        self.forced = True
        raise KeyboardInterrupt

    def restore(self) -> None:
        signal.alarm(0)
        for s, h in self._old.items():
            signal.signal(s, h)
        signal.signal(signal.SIGALRM, self._old_alarm)


def _dropped_line(engine: Engine, discovery: Discovery) -> str:
    total = engine.dropped_samples + engine.total_samples
    top = ", ".join(f"{c or '?'} ({n})" for c, n in engine.dropped_comms.most_common(8))
    why = f" ({discovery.problem})" if discovery.problem else ""
    return (f"{PROG}: --only-services dropped {engine.dropped_samples} of {total} samples, of "
            f"processes discovery could not place{why}: {top}\n")


def _recording_start(engine: Engine, first: Profile) -> int:
    try:
        return int(engine.meta["started_ns"])
    except (KeyError, ValueError):
        return first.start_ns


def _drive(engine: Engine, source: str, stream: bool) -> Iterator[list[list[Profile]]]:
    """Closed drain windows, batch by batch. A file is read twice: first for its processes,
    mappings and objects (a snapshot may be written after the samples it serves), then for
    samples; a stream once, window by window, so output follows input."""
    if not stream:
        for batch in iter_batches(source):
            engine.feed_metadata(batch)
        for batch in iter_batches(source):
            yield engine.feed(batch, metadata=False)
    else:
        for batch in iter_batches(source):
            yield engine.feed(batch)


def main(argv: list[str] | None = None) -> int:
    return run(PROG, symbolize_main, argv)


if __name__ == "__main__":
    sys.exit(main())
