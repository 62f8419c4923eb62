"""Output formats ("sinks") behind one interface, found by format name in SINKS.

A sink turns Profiles into bytes on an output stream; it never sees the recording. Each module
in this package defines one Sink subclass, named SINK:
- streaming formats (folded) write each window as it comes (`write_profile`, `end_window`);
- whole-output formats (pprof, speedscope, html, parquet) subclass WholeOutputSink, which
  buffers the Profiles of the run and calls `write_all` once at the end.

The command calls, in order:
  sink = get_sink(name)(out, SinkOptions(...))
  for each output window:  sink.write_profile(profile)  (one or more per window)
                           sink.end_window()            (after the profiles of a window)
  sink.close()                                          (once, at the end; out stays open)
`out` is a binary stream. With `options.stream` (input is `ebpf-symbolize -`), write and flush
each window in end_window() if the format can be streamed; formats that cannot (one pprof or
HTML document per output) buffer Profiles and write them in close().
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

from profiles.model import Profile
from recording.errors import UsageError


@dataclass(frozen=True)
class SinkOptions:
    """How a sink writes its output, from the flags of ebpf-symbolize."""

    stream: bool = False  # input is a stream: mark each window complete and flush it
    lines: bool = False  # frames carry file/line and inlined frames (--lines)
    # folded only (profiles/folded.FoldedStyle): `_[k]` after kernel frames, comm;PID roots,
    # and the `# ebpf-profiler` lines
    kernel_annotations: bool = False
    per_pid: bool = False
    headers: bool = True


class Sink:
    format: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Without --window, give the sink each drain window rather than the whole run merged
    # (the html page has a window selector).
    per_drain_windows: ClassVar[bool] = False

    def __init__(self, out: BinaryIO, options: SinkOptions | None = None) -> None:
        self.out = out
        self.options = options or SinkOptions()

    def write_profile(self, profile: Profile) -> None:
        raise NotImplementedError

    def end_window(self) -> None:
        """All profiles of one output window are written; flush them in stream mode."""
        self.out.flush()

    def close(self) -> None:
        """Write anything buffered. Does not close `out`."""
        self.out.flush()


class WholeOutputSink(Sink):
    """A format that is one document for the whole output: buffer, write at close."""

    def __init__(self, out: BinaryIO, options: SinkOptions | None = None) -> None:
        super().__init__(out, options)
        self._profiles: list[Profile] = []

    def write_profile(self, profile: Profile) -> None:
        self._profiles.append(profile)

    def end_window(self) -> None:
        pass  # one document for the whole output: nothing to flush per window

    def write_all(self, profiles: list[Profile]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.write_all(self._profiles)
        self.out.flush()


# --format NAME -> the module that defines its SINK. A module is imported only when its format
# is asked for: importing every format costs start-up (pyarrow for parquet).
SINKS: dict[str, str] = {
    "folded": "symbolizer.sinks.folded",
    "pprof": "symbolizer.sinks.pprof",
    "speedscope": "symbolizer.sinks.speedscope",
    "html": "symbolizer.sinks.html",
    "parquet": "symbolizer.sinks.parquet",
}


def available_formats() -> list[str]:
    return sorted(SINKS)


def get_sink(name: str) -> type[Sink]:
    module = SINKS.get(name)
    if module is None:
        raise UsageError(
            f"unknown --format {name!r}; known formats: {', '.join(available_formats())}"
        )
    sink: type[Sink] = importlib.import_module(module).SINK
    return sink
