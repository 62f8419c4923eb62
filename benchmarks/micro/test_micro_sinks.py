"""Folded and pprof encoding of one window of 10,000 unique stacks (symbolizer/sinks), the
synthetic system-wide window of tests/helpers/system_profile.py: 300 processes, stacks of 5-66
frames sharing prefixes, libc and kernel frames shared between processes. The HTML page of
the same window is timed too (its size is in extra_info).
"""

from __future__ import annotations

import gzip
import io

import pytest

from symbolizer.sinks import get_sink, html, pprof
from tests.helpers.system_profile import many_stacks

STACKS = 10_000


@pytest.fixture(scope="module")
def window():
    (profile,) = many_stacks(STACKS)
    assert len(profile.stacks) == STACKS
    return profile


def test_folded_10000_stacks(benchmark, window):
    def run():
        out = io.BytesIO()
        sink = get_sink("folded")(out)
        sink.write_profile(window)
        sink.end_window()
        return out.getvalue()

    text = benchmark(run).decode()
    benchmark.extra_info["bytes"] = len(text)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(lines) == STACKS
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == window.total


def test_pprof_10000_stacks(benchmark, window):
    body = benchmark(pprof.profile_to_pprof_bytes, window)
    benchmark.extra_info["bytes"] = len(body)
    assert gzip.decompress(body)  # a gzipped profile.proto


def test_html_10000_stacks(benchmark, window):
    page = benchmark(html.render, [window])
    benchmark.extra_info["bytes"] = len(page.encode())
    assert "__PROFILE_DATA__" not in page
