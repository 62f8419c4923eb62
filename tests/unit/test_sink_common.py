"""Checks that hold for every sink, on the synthetic Profiles of tests/helpers/sinks.py.

The profiles mimic what the symbolizer produces for the fixture workload: a PIE at an ASLR
base, a shared library, kernel frames, a frame with inlined calls, an unresolved frame, a
directly recursive stack (same return address twice) and two windows with different labels.
"""

from __future__ import annotations

import importlib
import io

import pytest

from tests.helpers.sinks import self_and_total, synthetic_profiles


@pytest.mark.parametrize("name", ["pprof", "speedscope", "html", "parquet"])
def test_every_sink_writes_something_for_no_profiles_and_for_synthetic_ones(name):
    module = importlib.import_module(f"symbolizer.sinks.{name}")
    assert name == module.SINK.format
    # GIVEN no profiles, then the synthetic ones
    empty, full = io.BytesIO(), io.BytesIO()
    # WHEN each sink writes them
    module.write([], empty)
    module.write(synthetic_profiles(), full)
    # THEN both are valid (non-empty) outputs and real data makes a bigger one
    assert empty.getvalue()
    assert len(full.getvalue()) > len(empty.getvalue())


def test_synthetic_totals_are_what_the_tests_rely_on():
    flat, cum = self_and_total(synthetic_profiles())
    assert cum["workload"] == 1009 + 300
    assert flat["lib_beta"] == 700
    assert cum["recurse"] == 4  # counted once per stack though it appears three times


@pytest.mark.parametrize("name", ["pprof", "speedscope", "html", "parquet"])
def test_registry_offers_each_sink_with_the_same_output(name):
    # GIVEN the sink registry of symbolizer/sinks/__init__.py (what `--format NAME` uses)
    from symbolizer.sinks import available_formats, get_sink

    assert name in available_formats()
    module = importlib.import_module(f"symbolizer.sinks.{name}")
    direct, via_registry = io.BytesIO(), io.BytesIO()
    module.write(synthetic_profiles(), direct)
    # WHEN the command drives it window by window
    sink = get_sink(name)(via_registry)
    for profile in synthetic_profiles():
        sink.write_profile(profile)
        sink.end_window()
    sink.close()
    # THEN it writes what write() writes (parquet embeds no time, so it is byte-equal too)
    assert via_registry.getvalue() == direct.getvalue()


def test_the_registry_is_a_plain_dict_of_modules_each_with_one_sink():
    from symbolizer.sinks import SINKS, Sink, get_sink

    assert set(SINKS) == {"folded", "pprof", "speedscope", "html", "parquet"}
    for name, module in SINKS.items():
        sink = importlib.import_module(module).SINK
        assert issubclass(sink, Sink) and sink.format == name and sink.description
        assert get_sink(name) is sink
