"""The one window rule (profiles/windows.py) that ebpf-symbolize --window and ebpf-upload's
upload windows share: a profile goes into the aligned window its midpoint falls in."""

from __future__ import annotations

import io

from profiles.folded import Block, WindowEnd, parse_lines
from profiles.windows import WindowGrouper, window_bounds
from symbolizer.sinks import SinkOptions
from symbolizer.sinks.folded import FoldedSink
from symbolizer.windows import OutputWindows, WindowPlan
from tests.helpers.profiles import names, profile

S = 1_000_000_000


def test_a_drain_that_starts_just_before_a_boundary_belongs_to_the_next_window():
    # GIVEN a drain window whose recorded start is 2 ms early (placing it by its start would
    # put it into [690, 700), whose upload the server already has)
    # THEN it goes where most of its second is
    assert window_bounds(699_998_000_000, 701_000_000_000, 10 * S) == (700 * S, 710 * S)
    assert window_bounds(709_003_000_000, 710_000_900_000, 10 * S) == (700 * S, 710 * S)
    assert window_bounds(100 * S, 110 * S, 10 * S) == (100 * S, 110 * S)


def test_a_profile_longer_than_a_window_stays_whole():
    assert window_bounds(95 * S, 135 * S, 10 * S) == (95 * S, 135 * S)


def test_windows_complete_when_the_input_passes_their_end():
    g = WindowGrouper(10 * S)
    g.add(profile({"a;x": 1}, 108, 109))
    g.add(profile({"a;x": 2}, 109.003, 110.001))
    assert g.pop_complete(109 * S) == []
    (w,) = g.pop_complete(110.001 * S)
    assert (w.start_ns, w.end_ns, names(w)) == (100 * S, 110 * S, {"a;x": 3})
    assert g.pending == 0


def test_without_a_span_one_window_spans_the_run():
    g = WindowGrouper(None)
    g.add(profile({"a;x": 1}, 101, 102, labels={"s": "1"}))
    g.add(profile({"a;x": 1}, 140, 141, labels={"s": "2"}))
    assert g.pop_complete(10**9 * S) == []
    ws = g.pop_all()
    assert [(w.start_ns // S, w.end_ns // S, w.labels) for w in ws] == [
        (101, 141, {"s": "1"}), (101, 141, {"s": "2"})]


def test_symbolizer_and_uploader_put_jittered_drains_in_the_same_windows():
    drains = [(699.998, 701.0), (701.0, 702.001), (709.2, 710.003), (710.003, 711.0)]
    out = OutputWindows(WindowPlan(span_ns=10 * S))
    sym = []
    for lo, hi in drains:
        sym += out.add([profile({"a;x": 1}, lo, hi)])
    sym += out.finish()
    up = WindowGrouper(10 * S)
    for lo, hi in drains:
        up.add(profile({"a;x": 1}, lo, hi))
    assert [(w[0].start_ns, w[0].end_ns, w[0].total) for w in sym] == [
        (w.start_ns, w.end_ns, w.total) for w in up.pop_all()] == [
        (700 * S, 710 * S, 3), (710 * S, 720 * S, 1)]


def test_from_until_select_drain_windows():
    out = OutputWindows(WindowPlan(span_ns=None, from_ns=102 * S, until_ns=104 * S))
    for sec in range(100, 106):
        out.add([profile({"a;x": 1}, sec, sec + 1)])
    (window,) = out.finish()
    assert [(p.start_ns // S, p.end_ns // S, p.total) for p in window] == [(102, 104, 2)]


def test_stream_written_by_the_sink_reads_back_window_by_window():
    buf = io.BytesIO()
    sink = FoldedSink(buf, SinkOptions(stream=True))
    for sec in (100, 101):
        sink.write_profile(profile({"comm;main": sec}, sec, sec + 1, labels={"k": "v"}))
        sink.end_window()
    events = list(parse_lines(buf.getvalue().decode().splitlines(keepends=True), "t"))
    assert [type(e) for e in events] == [Block, WindowEnd, Block, WindowEnd]
    assert events[1] == WindowEnd(101 * S) and events[3] == WindowEnd(102 * S)
    first = events[0]
    assert isinstance(first, Block) and names(first.profile) == {"comm;main": 100}
