"""speedscope sink: JSON structure (file-format-schema.json, "sampled"), totals, golden."""

from __future__ import annotations

import io
import json
from collections import Counter

from profiles.model import Profile
from symbolizer.sinks import speedscope
from tests.helpers.sinks import (
    ALPHA,
    BETA,
    MAIN,
    RUN,
    START_NS,
    WINDOW_NS,
    folded_lines,
    root,
    synthetic_profiles,
)


def _doc(profiles) -> dict:
    buf = io.BytesIO()
    speedscope.write(profiles, buf)
    return json.loads(buf.getvalue())


def test_document_follows_the_sampled_profile_schema():
    doc = _doc(synthetic_profiles())
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    assert all(isinstance(f["name"], str) for f in frames)
    assert len({(f["name"], f.get("file")) for f in frames}) == len(frames)  # shared, unique
    assert len(doc["profiles"]) == 2
    for p in doc["profiles"]:
        assert p["type"] == "sampled"
        assert p["unit"] == "none"
        assert len(p["samples"]) == len(p["weights"])
        assert all(0 <= i < len(frames) for s in p["samples"] for i in s)
        assert p["startValue"] == 0
        assert p["endValue"] == sum(p["weights"])
    assert 0 <= doc["activeProfileIndex"] < len(doc["profiles"])


def test_stacks_and_totals_equal_the_folded_ones():
    profiles = synthetic_profiles()
    doc = _doc(profiles)
    names = [f["name"] for f in doc["shared"]["frames"]]
    got: Counter[str] = Counter()
    for p in doc["profiles"]:
        for sample, weight in zip(p["samples"], p["weights"], strict=True):
            got[";".join(names[i] for i in sample)] += weight
    assert got == folded_lines(profiles)
    assert [p["endValue"] for p in doc["profiles"]] == [p.total for p in profiles]


def test_golden_small_profile():
    p = Profile(start_ns=START_NS, end_ns=START_NS + WINDOW_NS, sample_rate=100,
                labels={"pid": "7"})
    p.add((root("workload"), MAIN, RUN, ALPHA), 3)
    p.add((root("workload"), MAIN, RUN, BETA), 6)
    buf = io.BytesIO()
    speedscope.write([p], buf)
    assert buf.getvalue().decode() == (
        '{"$schema":"https://www.speedscope.app/file-format-schema.json",'
        '"shared":{"frames":[{"name":"workload"},{"name":"main","file":"workload.c"},'
        '{"name":"run_rounds","file":"workload.c"},{"name":"alpha","file":"workload.c"},'
        '{"name":"lib_beta","file":"fixture_lib.c"}]},'
        '"profiles":[{"type":"sampled",'
        '"name":"2025-11-25 08:00:00-08:00:10 UTC 100 Hz {pid=7}","unit":"none",'
        '"startValue":0,"endValue":9,"samples":[[0,1,2,3],[0,1,2,4]],"weights":[3,6]}],'
        '"name":"ebpf-profiler","activeProfileIndex":0,"exporter":"ebpf-profiler"}\n'
    )
