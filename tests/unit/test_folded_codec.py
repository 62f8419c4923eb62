"""The folded codec of ebpf-symbolize and ebpf-upload agrees on every process name: one that
starts with `#` (any process can set it with prctl(PR_SET_NAME)) is not read back as a comment
(issue 8, item 12)."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.folded import Block, escape_line, parse_lines, unescape_line
from profiles.folded_frames import FRAMES, frames_line, read_frames
from profiles.model import Frame, FrameKind, MappingInfo, Profile
from recording.errors import RecordingFormatError
from symbolizer.sinks import SinkOptions
from symbolizer.sinks.folded import FoldedSink
from tests.helpers.profiles import names
from tests.helpers.sinks import ALPHA, KSYS, MAIN, root, synthetic_profiles, user

S = 1_000_000_000
COMMS = ["#hidden", "# ebpf-profiler", "\\#x", "\\\\#y", "\\plain", "normal", "a#b", "#"]


def written(comms: list[str]) -> str:
    p = Profile(10 * S, 11 * S, 100, {"service_name": "svc"})
    for i, comm in enumerate(comms, 1):
        p.add((Frame(comm, FrameKind.ROOT), Frame("main"), Frame(f"leaf{i}")), i)
    out = io.BytesIO()
    sink = FoldedSink(out, SinkOptions(stream=True))
    sink.write_profile(p)
    sink.end_window()
    return out.getvalue().decode()


def test_round_trip_keeps_every_process_name_and_count():
    text = written(COMMS)
    events = list(parse_lines(text.splitlines(keepends=True), "t"))
    blocks = [e for e in events if isinstance(e, Block)]
    assert len(blocks) == 1
    want = {f"{c};main;leaf{i}": i for i, c in enumerate(COMMS, 1)}
    assert names(blocks[0].profile) == want
    assert blocks[0].profile.labels == {"service_name": "svc"}


def test_no_stack_line_is_a_comment_to_other_readers():
    # flamegraph.pl, speedscope and the Pyroscope readers see the escaped name as a frame
    ours = ("# ebpf-profiler ", FRAMES, "# ebpf-profiler-window-end")
    stack_lines = [line for line in written(COMMS).splitlines() if not line.startswith(ours)]
    assert len(stack_lines) == len(COMMS)
    for line in stack_lines:
        assert not line.startswith("#"), line
    assert "\\#hidden;main;leaf1 1" in written(["#hidden"]).splitlines()


def test_plain_comments_from_other_tools_stay_comments():
    (b,) = parse_lines(["# a comment\n", "x;y 2\n", "\\plain;y 1\n"], "t")
    assert isinstance(b, Block) and names(b.profile) == {"x;y": 2, "\\plain;y": 1}


@pytest.mark.parametrize("comm", COMMS)
def test_escape_is_undone_exactly(comm):
    line = f"{comm};f 1"
    assert unescape_line(escape_line(line)) == line
    assert not escape_line(line).startswith("#")


# ---- the frames line: addresses, mappings and build IDs through folded text (issue 11.7) ----

def _blocks(text: str) -> list[Block]:
    return [e for e in parse_lines(text.splitlines(keepends=True), "t") if isinstance(e, Block)]


def _streamed(profiles: list[Profile], **style: bool) -> str:
    out = io.BytesIO()
    sink = FoldedSink(out, SinkOptions(stream=True, **style))
    for p in profiles:
        sink.write_profile(p)
        sink.end_window()
    return out.getvalue().decode()


def test_frames_line_gives_back_every_frame_of_the_symbolizer():
    """Every field pprof needs (address, mapping, build ID, lines, inlining, reasons) comes
    back equal, and stacks that folded text merges by name stay apart."""
    profiles = synthetic_profiles()
    blocks = _blocks(_streamed(profiles))
    assert [b.profile.stacks for b in blocks] == [p.stacks for p in profiles]
    assert all(b.note is None for b in blocks)
    # merged by name in the text, two stacks in the frames
    p = Profile(0, S, 100)
    p.add((root("app"), MAIN, ALPHA), 2)
    p.add((root("app"), MAIN, user("alpha", 0x1200)), 5)
    text = _streamed([p])
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["app;main;alpha 7"]
    (b,) = _blocks(text)
    assert b.profile.stacks == p.stacks


def test_frames_line_with_kernel_annotations_and_escaped_names():
    p = Profile(0, S, 100)
    p.add((root("#x"), MAIN, Frame("a;b", address=5), KSYS), 3)
    (b,) = _blocks(_streamed([p], kernel_annotations=True))
    assert b.note is None and b.profile.stacks == p.stacks


def test_no_frames_line_without_headers_or_with_pids():
    p = synthetic_profiles()[0]
    for style in ({"headers": False}, {"per_pid": True}):
        assert FRAMES.strip() not in _streamed([p], **style)


def test_an_edited_stack_line_keeps_the_text_and_says_so():
    """The text is what counts: a line changed or filtered out between ebpf-symbolize and
    ebpf-upload (sed, grep) leaves the block with the names of its text and a note."""
    text = _streamed(synthetic_profiles()[:1])
    lines = text.splitlines(keepends=True)
    stack_lines = [i for i, line in enumerate(lines) if not line.startswith("#")]
    renamed = list(lines)
    with_main = next(i for i in stack_lines if ";main;" in lines[i])
    renamed[with_main] = renamed[with_main].replace(";main;", ";renamed;", 1)
    dropped = [line for i, line in enumerate(lines) if i != stack_lines[-1]]
    recount = list(lines)
    name, _, count = recount[stack_lines[0]].rstrip("\n").rpartition(" ")
    recount[stack_lines[0]] = f"{name} {int(count) + 1}\n"
    for edited, why in ((renamed, "other frames"), (dropped, "describes"),
                        (recount, "counts differ")):
        (b,) = _blocks("".join(edited))
        assert b.note and why in b.note and "names kept" in b.note
        assert all(f.address == 0 for stack in b.profile.stacks for f in stack)
        want = {line.rstrip("\n").rpartition(" ")[0]: int(line.rpartition(" ")[2])
                for line in edited if not line.startswith("#")}
        assert names(b.profile) == want


@pytest.mark.parametrize("body", [
    "not json", "[]", '{"frames": 1, "stacks": []}',
    '{"strings": ["a"], "frames": [{"n": 7}], "stacks": []}',
    '{"strings": ["a"], "frames": [{"n": 0, "a": -1}], "stacks": []}',
    '{"strings": ["a"], "frames": [{"n": 0, "a": true}], "stacks": []}',
    '{"strings": ["a"], "frames": [{"n": 0, "k": "bogus"}], "stacks": []}',
    '{"strings": ["a"], "frames": [{"n": 0, "m": 0}], "stacks": []}',
    '{"strings": ["a"], "frames": [{"n": 0}], "stacks": [[[1, [3]]]]}',
    '{"strings": [1], "frames": [], "stacks": []}',
])
def test_a_corrupt_frames_line_is_one_clear_error(body):
    text = "a;b 1\n" + FRAMES + body + "\n"
    with pytest.raises(RecordingFormatError, match=r"^t:2: bad ebpf-profiler-frames line"):
        _blocks(text)


# ---- the frames line is written as text: it is still the JSON json.dumps would write ----

_names = st.text(min_size=0, max_size=12)  # any Unicode: quotes, controls, surrogates' kin
# 0 and "" are how the line says "none" for the optional fields (a line 0, an ELF address 0,
# an empty file or reason are never made), so those are drawn from 1 and 1 character up
_maybe_int = st.one_of(st.none(), st.integers(1, 2**64 - 1))
_maybe_text = st.one_of(st.none(), st.text(min_size=1, max_size=12))
_mappings = st.builds(MappingInfo, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                      st.integers(0, 2**64 - 1), _names, st.one_of(st.none(), _names))
_frames = st.builds(
    Frame, _names, st.sampled_from(list(FrameKind)), st.integers(0, 2**64 - 1),
    st.one_of(st.none(), _names), st.one_of(st.none(), _names), _maybe_int,
    _maybe_text, _maybe_int, st.booleans(), _maybe_text, _maybe_int,
    st.one_of(st.none(), _mappings))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(st.lists(_frames, min_size=1, max_size=5).map(tuple),
                                   st.integers(1, 10**6)), min_size=1, max_size=3),
                min_size=1, max_size=4))
def test_frames_line_text_is_compact_json_that_reads_back(groups):
    line = frames_line(groups)
    assert line.startswith(FRAMES) and line.endswith("\n") and line.count("\n") == 1
    body = line[len(FRAMES):-1]
    # the canonical compact encoding: what json.dumps(separators=(",", ":")) gives
    assert json.dumps(json.loads(body), separators=(",", ":")) == body
    assert read_frames(body) == [list(g) for g in groups]
