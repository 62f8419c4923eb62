"""One run of ebpf-symbolize, from its parsed flags (symbolizer/cli.py): read the recording,
resolve, write windows to the sink. Imported once the flags are read, so that --help,
--version, shell completion and a bad flag answer without loading pyarrow and the resolvers."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from typing import Any

from cli_common.timeparse import parse_duration, parse_time
from discovery.discovery import Discovery
from discovery.settings import discovery_for
from profiles.model import Profile
from recording.errors import ProfilerError, RecordingFormatError, UsageError
from symbolizer.engine import STREAM_FORGET_AFTER_NS, Engine
from symbolizer.flags import options_from_args
from symbolizer.output import Output
from symbolizer.progress import Progress
from symbolizer.reading import drain_windows, recording_start
from symbolizer.resolve import load_lines_fn
from symbolizer.sinks import SinkOptions, get_sink
from symbolizer.stopping import StopOnSignal
from symbolizer.windows import OutputWindows, WindowPlan

FOLDED_ONLY = ("--annotations", "--per-pid", "--no-headers")
# The cyclic collector's thresholds during a run. Symbolizing allocates a few container
# objects per frame (frames, their keys, stacks) and frees almost none of them until the end,
# so at CPython's default (700 allocations) its collections traverse the same live objects
# over and over: ~12% of a warm system-size run (docs/performance.md). Cycles are still
# collected, every 100,000 allocations.
GC_THRESHOLD = (100_000, 50, 50)


@contextlib.contextmanager
def _tuned_gc() -> Iterator[None]:
    """What is alive when the run starts (modules, click's command) outlives it: frozen, so
    no collection traverses it again; the thresholds above. Both restored after the run (a
    caller may run several in one process)."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _window_ns(text: str) -> int:
    seconds = parse_duration(text, "--window")
    if seconds <= 0:
        raise UsageError(f"--window: {text!r} is not a positive duration; use e.g. 10s, 1m")
    return round(seconds * 1e9)


def _sink_options(a: Any, stream: bool, lines: bool) -> SinkOptions:
    if a.format != "folded":
        given = [f for f in FOLDED_ONLY if getattr(a, f.lstrip("-").replace("-", "_"))]
        if given:
            raise UsageError(f"{', '.join(given)}: only for --format folded, not {a.format}")
    return SinkOptions(stream=stream, lines=lines, kernel_annotations=a.annotations,
                       per_pid=a.per_pid, headers=not a.no_headers)


def symbolize(a: Any, prog: str, discovery: Discovery | None = None) -> int:
    """One run, from the parsed flags of ebpf-symbolize (symbolizer.cli)."""
    with _tuned_gc():
        return _symbolize(a, prog, discovery)


def _symbolize(a: Any, prog: str, discovery: Discovery | None) -> int:
    sink_cls = get_sink(a.format)  # unknown formats fail before any work
    sink_options = _sink_options(a, a.recording == "-", a.lines)
    options = options_from_args(a, lines=a.lines,
                                # the one format with pid and comm columns, and --per-pid
                                per_process=a.format == "parquet" or a.per_pid)
    lines_fn = None
    if options.lines:
        lines_fn = load_lines_fn()
        if lines_fn is None:
            raise UsageError("--lines needs symbolizer/lines.py, which this installation "
                             "lacks; run without --lines")
    stream = a.recording == "-"
    from_b = parse_time(a.from_, "--from") if a.from_ else None
    until_b = parse_time(a.until, "--until") if a.until else None
    span = _window_ns(a.window) if a.window else None

    if discovery is None:
        discovery = discovery_for(prog, a.kubernetes_node, a.only_services)
    engine = Engine(options, lines_fn, labeler=discovery.labels_for,
                    forget_after_ns=STREAM_FORGET_AFTER_NS if stream else None)
    if stream and sys.stdin is None:  # started with fd 0 closed (`<&-`)
        raise UsageError("stdin is closed: nothing to read; pipe `ebpf-record --out -` in "
                         "or give a recording file")
    output = Output(a.out, a.recording)  # --out FILE is replaced only at the end
    sink = sink_cls(output.stream, sink_options)
    progress = Progress(prog)
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
                start = recording_start(engine, drain[0])
                grouper = OutputWindows(WindowPlan(
                    span, from_b.resolve(start) if from_b else None,
                    until_b.resolve(start) if until_b else None,
                    per_drain=stream or sink_cls.per_drain_windows))
            write(grouper.add(drain))

    stopping = StopOnSignal(prog) if stream else None
    # The output stream was taken above; whatever a library prints from here on goes to
    # stderr, so `--format pprof > x.pprof` holds nothing but the profile.
    quiet = contextlib.redirect_stdout(sys.stderr)
    quiet.__enter__()
    try:
        for batches, closed in enumerate(drain_windows(engine, a.recording, stream), 1):
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
    if not a.quiet:
        sys.stderr.write(engine.report.render(engine.total_samples))
    if engine.dropped_samples:
        sys.stderr.write(_dropped_line(prog, engine, discovery))
    return 0


def _dropped_line(prog: str, engine: Engine, discovery: Discovery) -> str:
    total = engine.dropped_samples + engine.total_samples
    top = ", ".join(f"{c or '?'} ({n})" for c, n in engine.dropped_comms.most_common(8))
    why = f" ({discovery.problem})" if discovery.problem else ""
    return (f"{prog}: --only-services dropped {engine.dropped_samples} of {total} samples, of "
            f"processes discovery could not place{why}: {top}\n")
