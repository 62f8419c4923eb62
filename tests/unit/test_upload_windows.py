"""Reading folded text with window headers, grouping into aligned windows, retime."""

from __future__ import annotations

import json

import pytest

from profiles.folded import Block, WindowEnd, parse_lines
from profiles.model import FrameKind, Profile
from profiles.windows import WindowGrouper
from recording.errors import RecordingFormatError
from tests.helpers.profiles import names, profile
from uploader.replay import retime

S = 1_000_000_000


def header(f: int, u: int, rate: int = 100, labels: dict | None = None) -> str:
    meta = {"from_ns": f * S, "until_ns": u * S, "sample_rate": rate, "labels": labels or {}}
    return "# ebpf-profiler " + json.dumps(meta)


def test_headers_blocks_and_window_ends():
    text = [header(100, 101), "a;b 3", "a;c 4", header(100, 101, labels={"pod": "p"}), "a;b 1",
            "# ebpf-profiler-window-end", "# a comment", "", header(101, 102), "a;b 2"]
    events = list(parse_lines(text, "t"))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Block", "Block", "WindowEnd", "Block"]
    first = events[0]
    assert isinstance(first, Block) and first.timed and first.rated
    assert names(first.profile) == {"a;b": 3, "a;c": 4} and first.profile.start_ns == 100 * S
    assert isinstance(events[1], Block) and events[1].profile.labels == {"pod": "p"}
    assert events[2] == WindowEnd(101 * S)


def test_plain_folded_is_one_block_without_window():
    (b,) = parse_lines(["x;y 1\n", "x;y 2\n", "x;z 5\n"], "t")
    assert isinstance(b, Block) and not b.timed and not b.rated
    assert names(b.profile) == {"x;y": 3, "x;z": 5}


def test_first_frame_is_the_process_name():
    (b,) = parse_lines(["comm;main;leaf 1\n"], "t")
    assert isinstance(b, Block)
    ((stack, _),) = b.profile.stacks.items()
    assert [f.kind for f in stack] == [FrameKind.ROOT, FrameKind.USER, FrameKind.USER]


@pytest.mark.parametrize("lines,needle", [
    (["a;b notanumber"], "not a folded line"),
    (["# ebpf-profiler {bad json"], "bad ebpf-profiler header"),
    (["# ebpf-profiler {\"from_ns\": 5}"], "bad ebpf-profiler header"),
    (["PAR1\x00\x00"], "pipe it through ebpf-symbolize"),
    # counts Python's str.isdigit accepts but int() or the Go servers do not
    (["a;b \u00b2"], "not a folded line"),
    (["a;b \u0663"], "not a folded line"),
    (["a;b " + "9" * 5000], "count"),
    (["a;b 9223372036854775808"], "count"),
    ([header(1, 2)[:-1] + ', "sample_rate": "abc"}'], "sample_rate"),
    ([header(1, 2).replace('"sample_rate": 100', '"sample_rate": -5')], "sample_rate"),
    ([header(1, 2).replace('"sample_rate": 100', '"sample_rate": 1.5')], "sample_rate"),
])
def test_bad_input_names_file_line_and_fix(lines, needle):
    with pytest.raises(RecordingFormatError) as exc:
        list(parse_lines(lines, "in.folded"))
    assert needle in str(exc.value) and "in.folded" in str(exc.value)


def test_drain_windows_sum_into_aligned_upload_windows():
    b = WindowGrouper(10 * S)
    for sec in (103, 104, 109, 110, 111):
        b.add(profile({"a;b": 1, f"s{sec}": 1}, sec, sec + 1))
    done = b.pop_complete(110 * S)
    assert [(w.start_ns // S, w.end_ns // S) for w in done] == [(100, 110)]
    assert names(done[0])["a;b"] == 3
    rest = b.pop_all()
    assert [(w.start_ns // S, w.end_ns // S) for w in rest] == [(110, 120)]
    assert rest[0].total == 4


def test_jittered_drain_edges_still_land_in_one_window():
    # real drains end a little after the boundary: [709.003, 710.0009) belongs to [700, 710)
    b = WindowGrouper(10 * S)
    b.add(profile({"x": 2}, 709.003462890, 710.000891224))
    b.add(profile({"x": 3}, 710.000891224, 711.000465549))
    done = b.pop_complete(710_000_891_224)
    assert [(w.start_ns, w.end_ns, w.total) for w in done] == [(700 * S, 710 * S, 2)]
    assert [(w.start_ns, w.end_ns, w.total) for w in b.pop_all()] == [(710 * S, 720 * S, 3)]


def test_labels_and_rates_are_separate_uploads_and_spanning_blocks_stay_whole():
    b = WindowGrouper(10 * S)
    b.add(profile({"x": 1}, 101, 102, labels={"pod": "a"}))
    b.add(profile({"x": 1}, 101, 102, labels={"pod": "b"}))
    b.add(profile({"x": 1}, 101, 102, rate=97, labels={"pod": "a"}))
    b.add(profile({"y": 9}, 95, 135))  # whole-run block: not split
    ws = b.pop_all()
    assert len(ws) == 4
    assert any(w.start_ns == 95 * S and w.end_ns == 135 * S for w in ws)


def test_retime_ends_now_keeps_spacing_and_alignment():
    ws = [Profile(1000 * S, 1010 * S, 100), Profile(1030 * S, 1040 * S, 100)]
    now = 50_007 * S
    shift = retime(ws, 10 * S, now_ns=now)
    assert ws[1].end_ns == 50_000 * S  # last boundary <= now
    assert ws[1].start_ns - ws[0].start_ns == 30 * S
    assert shift % (10 * S) == 0
    assert all(w.start_ns % (10 * S) == 0 for w in ws)
