"""ebpf-symbolize FILE|- : a recording in, named stacks out (folded by default).

Thin over the library: flags.py (symbol sources), reading.py (the read loop), windows.py
(output windows), sinks/ (formats), output.py (--out), progress.py and stopping.py.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from cli_common.argparser import ArgumentParser
from cli_common.command import run
from cli_common.timeparse import TIME_HELP, parse_duration, parse_time
from discovery.discovery import Discovery
from discovery.settings import discovery_for
from profiles.model import Profile
from recording.errors import ProfilerError, RecordingFormatError, UsageError
from symbolizer.engine import STREAM_FORGET_AFTER_NS, Engine
from symbolizer.flags import add_symbol_flags, options_from_args
from symbolizer.output import Output
from symbolizer.progress import Progress
from symbolizer.reading import drain_windows, recording_start
from symbolizer.resolve import load_lines_fn
from symbolizer.sinks import SinkOptions, get_sink
from symbolizer.stopping import StopOnSignal
from symbolizer.windows import OutputWindows, WindowPlan

PROG = "ebpf-symbolize"


def _window_ns(text: str) -> int:
    seconds = parse_duration(text, "--window")
    if seconds <= 0:
        raise UsageError(f"--window: {text!r} is not a positive duration; use e.g. 10s, 1m")
    return round(seconds * 1e9)


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
    p.add_argument("--from", dest="from_", metavar="TIME",
                   help=f"first time to include: {TIME_HELP} of the recording")
    p.add_argument("--until", metavar="TIME",
                   help="end of the time to include (exclusive), in the same forms")
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
    add_symbol_flags(p)
    return p


def discovery_from_args(a: argparse.Namespace) -> Discovery:
    return discovery_for(PROG, a.kubernetes_node, a.only_services)


def symbolize_main(argv: list[str], *, discovery: Discovery | None = None) -> int:
    """The command. `discovery`: one made by the caller (e.g. with an explicit API client
    configuration) instead of the one --kubernetes-node / --only-services describe."""
    a = build_parser().parse_args(argv)  # bad flags: UsageError, one line
    sink_cls = get_sink(a.format)  # unknown formats fail before any work
    options = options_from_args(a, lines=a.lines,
                                # the one format with pid and comm columns
                                per_process=a.format == "parquet")
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
        discovery = discovery_from_args(a)
    engine = Engine(options, lines_fn, labeler=discovery.labels_for,
                    forget_after_ns=STREAM_FORGET_AFTER_NS if stream else None)
    if stream and sys.stdin is None:  # started with fd 0 closed (`<&-`)
        raise UsageError("stdin is closed: nothing to read; pipe `ebpf-record --out -` in "
                         "or give a recording file")
    output = Output(a.out, a.recording)  # --out FILE is replaced only at the end
    sink = sink_cls(output.stream, SinkOptions(stream=stream, lines=options.lines))
    progress = Progress(PROG)
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

    stopping = StopOnSignal(PROG) if stream else None
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
    sys.stderr.write(engine.report.render(engine.total_samples))
    if engine.dropped_samples:
        sys.stderr.write(_dropped_line(engine, discovery))
    return 0


def _dropped_line(engine: Engine, discovery: Discovery) -> str:
    total = engine.dropped_samples + engine.total_samples
    top = ", ".join(f"{c or '?'} ({n})" for c, n in engine.dropped_comms.most_common(8))
    why = f" ({discovery.problem})" if discovery.problem else ""
    return (f"{PROG}: --only-services dropped {engine.dropped_samples} of {total} samples, of "
            f"processes discovery could not place{why}: {top}\n")


def main(argv: list[str] | None = None) -> int:
    return run(PROG, symbolize_main, argv)


if __name__ == "__main__":
    sys.exit(main())
