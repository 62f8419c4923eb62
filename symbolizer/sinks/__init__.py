"""Output formats ("sinks") behind one interface, found by format name.

A sink turns Profiles into bytes on an output stream; it never sees the recording. Every
module in this package is a candidate, in one of two shapes:

1. whole-output formats (pprof, speedscope, html, parquet): module-level
       FORMAT = "pprof"
       def write(profiles: Iterable[Profile], out: BinaryIO) -> None
   The command buffers the Profiles of the run and calls write() once at the end
   (WholeOutputSink below).
2. streaming formats: a `Sink` subclass decorated with `@register`:

    @register
    class PprofSink(Sink):
        format = "pprof"
        def write_profile(self, profile: Profile) -> None: ...

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

import contextlib
import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import BinaryIO, ClassVar

from profiles.model import Profile
from recording.errors import UsageError


@dataclass(frozen=True)
class SinkOptions:
    stream: bool = False  # input is a stream: mark each window complete and flush it
    lines: bool = False  # frames carry file/line and inlined frames (--lines)


class Sink:
    format: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Without --window, give the sink each drain window rather than the whole run merged
    # (the html page has a window selector). A module says so with PER_DRAIN_WINDOWS = True.
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
    """Adapter for a module with FORMAT and write(profiles, out): buffer, write at close."""

    write_all: ClassVar[Callable[[Iterable[Profile], BinaryIO], None]]

    def __init__(self, out: BinaryIO, options: SinkOptions | None = None) -> None:
        super().__init__(out, options)
        self._profiles: list[Profile] = []

    def write_profile(self, profile: Profile) -> None:
        self._profiles.append(profile)

    def end_window(self) -> None:
        pass  # one document for the whole output: nothing to flush per window

    def close(self) -> None:
        type(self).write_all(self._profiles, self.out)
        self.out.flush()


def _adapt_module(mod: ModuleType) -> None:
    fmt = getattr(mod, "FORMAT", None)
    write = getattr(mod, "write", None)
    if not isinstance(fmt, str) or not callable(write) or fmt in _REGISTRY:
        return
    doc = (mod.__doc__ or "").strip().splitlines()
    cls = type(f"{fmt.title()}Sink", (WholeOutputSink,), {
        "format": fmt,
        "description": doc[0] if doc else fmt,
        "write_all": staticmethod(write),
        "per_drain_windows": bool(getattr(mod, "PER_DRAIN_WINDOWS", False)),
    })
    _REGISTRY[fmt] = cls


_REGISTRY: dict[str, type[Sink]] = {}
_loaded = False


def register(cls: type[Sink]) -> type[Sink]:
    if not cls.format:
        raise ValueError(f"{cls.__name__} has no format name")
    _REGISTRY[cls.format] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        try:
            mod = importlib.import_module(f"{__name__}.{info.name}")
        except ImportError:
            continue  # a format whose dependency is missing is simply not offered
        _adapt_module(mod)


def available_formats() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_sink(name: str) -> type[Sink]:
    if name not in _REGISTRY and name.isidentifier():
        # The module named like the format, alone: importing every format costs start-up.
        with contextlib.suppress(ImportError):
            _adapt_module(importlib.import_module(f"{__name__}.{name}"))
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UsageError(
            f"unknown --format {name!r}; known formats: {', '.join(available_formats())}"
        )
    return cls
