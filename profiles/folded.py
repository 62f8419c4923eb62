r"""Folded stacks, written and read: `comm;root;...;leaf COUNT`, as Brendan Gregg's
stackcollapse tools write and Pyroscope's /ingest reads, with the window headers of
docs/recording-format.md ("Folded output with windows").

A line `# ebpf-profiler {"from_ns": ..., "until_ns": ..., "sample_rate": ..., "labels": {...}}`
opens a block of stack lines; `# ebpf-profiler-window-end` follows the last block of each
window in a stream. A line `# ebpf-profiler-frames {...}` after a block's stack lines gives
their addresses, mappings and build IDs (profiles/folded_frames.py). Other `#` lines are
comments; a stack line starting with `\#` (or `\\#`...) is an escaped one whose first frame
starts with `#`, and loses one `\`. Text without headers is
one block whose window and rate the reader supplies (ebpf-upload: --from/--until,
--sample-rate).

The writer is symbolizer/sinks/folded.py's and the reader ebpf-upload's: one codec, so what one
writes the other reads back. A block is read into a Profile whose frames carry names only, the
first of each stack being the process name that roots it (FrameKind.ROOT), or, with its
frames line, whose frames are those the symbolizer resolved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from profiles.folded_frames import FRAMES, FramesError, frames_line, read_frames
from profiles.model import Frame, FrameKind, Profile, Stack
from recording.errors import RecordingFormatError

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
    # why the block's frames line (profiles/folded_frames.py) was not used, for the reader
    # to report; the block then has the names of its text
    note: str | None = None
    # the stack lines read so far (names as frames, count), until the frames line comes
    lines: list[tuple[Stack, int]] = field(default_factory=list)


@dataclass(frozen=True)
class WindowEnd:
    """The stream says: every block of the window ending at until_ns has been written."""

    until_ns: int | None


Event = Block | WindowEnd


def frame_text(name: str) -> str:
    # ';' separates frames and a newline ends the line; stackcollapse-perf.pl rewrites them too.
    return name.replace(";", ":").replace("\n", " ").replace("\r", " ") or "[unknown]"


# Readers take a line starting with `#` for a comment, and a process names itself `#...` with
# one prctl(PR_SET_NAME): its stacks would vanish. Such a line gets a `\` in front (shown as is
# by flamegraph.pl and speedscope), as does one already starting with backslashes and `#`, so
# unescape_line drops exactly one `\` from a line matching `\+#` and gets the name back.
_NEEDS_ESCAPE = re.compile(r"\\*#")
_ESCAPED = re.compile(r"\\+#")


def escape_line(line: str) -> str:
    return "\\" + line if _NEEDS_ESCAPE.match(line) else line


def unescape_line(line: str) -> str:
    return line[1:] if _ESCAPED.match(line) else line


@dataclass(frozen=True)
class FoldedStyle:
    """How stacks are written, for the readers perf users bring."""

    # `name_[k]` for kernel frames: what bcc's profile.py --annotations and
    # stackcollapse-perf.pl --kernel write, and flamegraph.pl's palettes colour apart
    kernel_annotations: bool = False
    # `comm;PID;...`: one stack per process (needs Profile.processes, filled when the
    # symbolizer is asked for processes); ebpf-upload reads the PID as a frame
    per_pid: bool = False
    # the `# ebpf-profiler {...}` line before each block; without it the text is plain
    # folded, whose window and rate the reader must be told
    headers: bool = True
    # the `# ebpf-profiler-frames {...}` line after each block (with headers, and not with
    # per_pid, whose PID frames are no frames): addresses, mappings and build IDs, so that
    # ebpf-upload's pprof keeps them (profiles/folded_frames.py)
    frames: bool = True


KERNEL_ANNOTATION = "_[k]"


def _text(f: Frame, style: FoldedStyle) -> str:
    if style.kernel_annotations and f.kind is FrameKind.KERNEL:
        return frame_text(f.name) + KERNEL_ANNOTATION
    return frame_text(f.name)


def _names(stack: Stack, style: FoldedStyle) -> list[str]:
    return [_text(f, style) for f in stack]


def folded_lines(profile: Profile, style: FoldedStyle | None = None) -> list[str]:
    """`stack count` lines of one profile, stacks with equal names merged, sorted."""
    style = style or FoldedStyle()
    merged: dict[str, int] = {}
    if style.per_pid and profile.processes:
        for (stack, pid, _comm), count in profile.processes.items():
            names = _names(stack, style)
            key = ";".join([*names[:1], str(pid), *names[1:]])
            merged[key] = merged.get(key, 0) + count
        return [f"{k} {n}" for k, n in sorted(merged.items()) if n > 0]
    return [f"{k} {sum(n for _, n in g)}" for k, g in _line_groups(profile, style)]


def _line_groups(profile: Profile, style: FoldedStyle) -> list[tuple[str, list[tuple[Stack, int]]]]:
    """The stack lines, sorted, each with the stacks whose names make it."""
    groups: dict[str, list[tuple[Stack, int]]] = {}
    # a frame's text once per profile: stacks share most of their frames (a frame's hash is
    # kept in it, so the lookup costs less than frame_text's three replaces)
    texts: dict[Frame, str] = {}

    def text(f: Frame) -> str:
        t = texts[f] = _text(f, style)
        return t

    for stack, count in profile.stacks.items():
        if count > 0:
            line = ";".join([texts.get(f) or text(f) for f in stack])
            groups.setdefault(line, []).append((stack, count))
    return sorted(groups.items())


def header(profile: Profile) -> str:
    meta = {"from_ns": profile.start_ns, "until_ns": profile.end_ns,
            "sample_rate": profile.sample_rate, "labels": profile.labels}
    return HEADER + json.dumps(meta) + "\n"


def write_block(profile: Profile, style: FoldedStyle | None = None) -> str:
    """One block: the header (unless style.headers is off), the escaped stack lines, and the
    frames line (when style.frames applies)."""
    style = style or FoldedStyle()
    if not (style.headers and style.frames) or style.per_pid:
        head = header(profile) if style.headers else ""
        return head + "".join(escape_line(line) + "\n" for line in folded_lines(profile, style))
    ordered = _line_groups(profile, style)
    lines = "".join(escape_line(f"{k} {sum(n for _, n in g)}") + "\n" for k, g in ordered)
    return header(profile) + lines + frames_line([g for _, g in ordered])


def _shown(f: Frame, text: str) -> bool:
    """Whether `text`, a name in a stack line, is how write_block shows frame f."""
    shown = frame_text(f.name)
    return text == shown or (f.kind is FrameKind.KERNEL and text == shown + KERNEL_ANNOTATION)


def _mismatch(lines: list[tuple[Stack, int]], groups: list[list[tuple[Stack, int]]]
              ) -> str | None:
    """Why the frames line's groups do not describe these stack lines, or None."""
    if len(groups) != len(lines):
        return f"describes {len(groups)} stack lines where the block has {len(lines)}"
    for (names, count), group in zip(lines, groups, strict=True):
        if sum(n for _, n in group) != count:
            return f"counts differ from those of the stack line {_line(names)!r}"
        for stack, _n in group:
            if len(stack) != len(names) or not all(
                    _shown(f, t.name) for f, t in zip(stack, names, strict=True)):
                return f"has other frames than the stack line {_line(names)!r}"
    return None


def _line(names: Stack) -> str:
    text = ";".join(f.name for f in names)
    return text if len(text) <= 60 else text[:57] + "..."


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
        elif line.startswith(FRAMES):
            self._frames_line(line[len(FRAMES):])
        elif line.strip() == WINDOW_END:
            events += self._finish()
            events.append(WindowEnd(self._last_until))
        elif line.startswith("#") or not line.strip():
            pass
        else:
            # a stack whose first frame starts with `#` (a process can name itself so) comes
            # escaped from ebpf-symbolize: escape_line above
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
            names = self._stack(stack)
            self._block.profile.add(names, n)
            self._block.lines.append((names, n))
        return events

    def _frames_line(self, text: str) -> None:
        """Put back the frames of the block's stack lines, if they are still those lines."""
        try:
            groups = read_frames(text)
        except FramesError as exc:
            raise self._fail(f"bad ebpf-profiler-frames line ({exc}); it is written by "
                             "ebpf-symbolize: pipe its output unchanged, or drop the line"
                             ) from None
        block = self._block
        if block is None:
            block = self._block = Block(Profile(0, 0, 0), timed=False, rated=False)
        why = _mismatch(block.lines, groups)
        if why is not None:
            block.note = (f"{self.source}:{self.lineno}: addresses and build IDs of this block "
                          f"dropped, names kept: its frames line {why} (the text was changed "
                          "after ebpf-symbolize wrote it)")
        else:
            stacks: dict[Stack, int] = {}
            for group in groups:
                for stack, n in group:
                    stacks[stack] = stacks.get(stack, 0) + n
            block.profile.stacks = stacks
        block.lines = []

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
        if b is not None:
            b.lines = []  # a frames line after the block's end is for no block
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
