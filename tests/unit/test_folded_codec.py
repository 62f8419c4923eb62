"""The folded codec of ebpf-symbolize and ebpf-upload agrees on every process name: one that
starts with `#` (any process can set it with prctl(PR_SET_NAME)) is not read back as a comment
(issue 8, item 12)."""

from __future__ import annotations

import io

import pytest

from profiles.folded import Block, escape_line, parse_lines, unescape_line
from profiles.model import Frame, FrameKind, Profile
from symbolizer.sinks import SinkOptions
from symbolizer.sinks.folded import FoldedSink
from tests.helpers.profiles import names

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
    for line in written(COMMS).splitlines()[1:-1]:
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
