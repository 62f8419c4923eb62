r"""Read folded text, with the window headers `ebpf-symbolize` writes.

Convention (docs/recording-format.md, "Folded output with windows"): a line
`# ebpf-profiler {"from_ns": ..., "until_ns": ..., "sample_rate": ..., "labels": {...}}` opens
a block of `frame;frame;leaf COUNT` lines; `# ebpf-profiler-window-end` follows the last block
of each window in a stream. Other `#` lines are comments; a stack line starting with `\#`
(or `\\#`...) is an escaped one whose first frame starts with `#`, and loses one `\`. Text
without headers is one block whose window comes from --from/--until.

Each block is read into a Profile whose frames carry names only: the first frame of a stack is
the process name that roots it (FrameKind.ROOT, as the agent and ebpf-symbolize write it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from recording.errors import RecordingFormatError
from symbolizer.model import Frame, FrameKind, Profile, Stack
from symbolizer.sinks.folded import unescape_line

HEADER = "# ebpf-profiler "
WINDOW_END = "# ebpf-profiler-window-end"
MAX_COUNT = 2**63 - 1  # pprof sample values are int64
MAX_COUNT_DIGITS = len(str(MAX_COUNT))


@dataclass
class Block:
    """One block of folded text as read: its Profile, and what its text left unsaid. Without
    a header the window and rate are unknown (0) until the reader fills them in."""

    profile: Profile
    timed: bool = True  # a header gave the window [start_ns, end_ns)
    rated: bool = True  # a header gave the sample rate


@dataclass(frozen=True)
class WindowEnd:
    """The stream says: every block of the window ending at until_ns has been written."""

    until_ns: int | None


Event = Block | WindowEnd


def _looks_binary(first: str) -> bool:
    # Parquet files start with PAR1; Arrow IPC streams with the 0xFFFFFFFF continuation marker.
    return first.startswith("PAR1") or first.startswith("\ufffd\ufffd\ufffd\ufffd") or \
        first.startswith("ARROW1") or "\x00" in first[:64]


class FoldedParser:
    """Feed lines one by one (a stream) and collect events; `close()` at end of input."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lineno = 0
        self._block: Block | None = None
        self._last_until: int | None = None
        # one Frame per name: stacks share them, as a recording's Profiles do
        self._frames: dict[tuple[str, bool], Frame] = {}

    def _fail(self, what: str) -> RecordingFormatError:
        return RecordingFormatError(f"{self.source}:{self.lineno}: {what}")

    def feed(self, line: str) -> list[Event]:
        self.lineno += 1
        if self.lineno == 1 and _looks_binary(line):
            raise RecordingFormatError(
                f"{self.source}: this is a recording, not folded text; pipe it through "
                "ebpf-symbolize first: ebpf-symbolize - | ebpf-upload -")
        line = line.rstrip("\r\n")
        events: list[Event] = []
        if line.startswith(HEADER):
            events += self._finish()
            self._block = self._header(line[len(HEADER):])
            self._last_until = self._block.profile.end_ns
        elif line.strip() == WINDOW_END:
            events += self._finish()
            events.append(WindowEnd(self._last_until))
        elif line.startswith("#") or not line.strip():
            pass
        else:
            # a stack whose first frame starts with `#` (a process can name itself so) comes
            # escaped from ebpf-symbolize: symbolizer/sinks/folded.py escape_line
            stack, sp, count = unescape_line(line).rpartition(" ")
            # Pyroscope splits at the last space and needs an integer count (else 422).
            # ASCII digits only: str.isdigit() also takes '²' (int() refuses it) and '٣'
            # (int() reads 3, Go's strconv.Atoi refuses it).
            if not sp or not stack.strip() or not (count.isascii() and count.isdigit()):
                raise self._fail(f"not a folded line (want 'frame;frame;leaf COUNT'): "
                                 f"{line[:80]!r}")
            n = int(count) if len(count) <= MAX_COUNT_DIGITS else MAX_COUNT + 1
            if n > MAX_COUNT:
                raise self._fail(f"count {count[:24]}{'...' if len(count) > 24 else ''} is "
                                 "more than a profile can hold (2^63-1)")
            if self._block is None:
                self._block = Block(Profile(0, 0, 0), timed=False, rated=False)
            self._block.profile.add(self._stack(stack), n)
        return events

    def _stack(self, text: str) -> Stack:
        out = []
        for i, name in enumerate(text.split(";")):
            f = self._frames.get((name, i == 0))
            if f is None:
                kind = FrameKind.ROOT if i == 0 else FrameKind.USER
                f = self._frames[(name, i == 0)] = Frame(name, kind)
            out.append(f)
        return tuple(out)

    def close(self) -> list[Event]:
        return self._finish()

    def _finish(self) -> list[Event]:
        b, self._block = self._block, None
        self._frames.clear()  # a stream runs for days: keep names of the open block only
        return [b] if b is not None else []

    def _header(self, text: str) -> Block:
        try:
            meta = json.loads(text)
            from_ns, until_ns = int(meta["from_ns"]), int(meta["until_ns"])
            rate = meta.get("sample_rate")
            if rate is not None and (type(rate) is not int or rate <= 0):
                raise TypeError(f"sample_rate {str(rate)[:20]!r} is not a positive whole "
                                "number")
            labels = meta.get("labels") or {}
            if not isinstance(labels, dict):
                raise TypeError("labels is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise self._fail(f"bad ebpf-profiler header ({exc}); expected "
                             '{"from_ns": N, "until_ns": N, "sample_rate": N, "labels": {}}'
                             ) from None
        if until_ns < from_ns:
            raise self._fail("header has until_ns before from_ns")
        profile = Profile(from_ns, until_ns, rate or 0, {str(k): str(v) for k, v in labels.items()})
        return Block(profile, rated=rate is not None)


def parse_lines(lines: Iterable[str], source: str) -> Iterator[Event]:
    parser = FoldedParser(source)
    for line in lines:
        yield from parser.feed(line)
    yield from parser.close()
