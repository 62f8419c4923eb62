"""speedscope sink: the JSON file format of https://www.speedscope.app (file-format-schema.json).

One "sampled" profile per Profile (window and label set), all sharing one frame table. Each
unique stack is one sample (frame indices root first, as the schema's SampledStack lists
them) weighted by its count; the unit is "none" because weights are sample counts, as in the
folded output (speedscope then shows samples, and the name says the sample rate).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, BinaryIO

from profiles.model import Frame, Profile
from symbolizer.sinks import WholeOutputSink

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def _frame_key(frame: Frame) -> tuple[str, str | None]:
    # Frames are functions, not lines: speedscope merges equal frames in its views, and a
    # function split per line would scatter one function over many boxes.
    return (frame.name, frame.file)


def _profile_name(profile: Profile) -> str:
    start = datetime.fromtimestamp(profile.start_ns / 1e9, tz=UTC)
    end = datetime.fromtimestamp(profile.end_ns / 1e9, tz=UTC)
    labels = ",".join(f"{k}={v}" for k, v in sorted(profile.labels.items()))
    when = f"{start:%Y-%m-%d %H:%M:%S}-{end:%H:%M:%S} UTC"
    return f"{when} {profile.sample_rate} Hz" + (f" {{{labels}}}" if labels else "")


def to_document(profiles: Iterable[Profile]) -> dict[str, Any]:
    frames: list[dict[str, Any]] = []
    index: dict[tuple[str, str | None], int] = {}

    def frame_index(frame: Frame) -> int:
        key = _frame_key(frame)
        i = index.get(key)
        if i is None:
            i = index[key] = len(frames)
            entry: dict[str, Any] = {"name": frame.name}
            if frame.file:
                entry["file"] = frame.file
            if frame.start_line:  # a Python function's first line (the schema's Frame.line)
                entry["line"] = frame.start_line
            frames.append(entry)
        return i

    out_profiles = []
    for profile in profiles:
        samples, weights = [], []
        for stack, count in profile.stacks.items():
            if count > 0:
                samples.append([frame_index(f) for f in stack])
                weights.append(count)
        total = sum(weights)
        out_profiles.append({
            "type": "sampled",
            "name": _profile_name(profile),
            "unit": "none",
            "startValue": 0,
            "endValue": total,
            "samples": samples,
            "weights": weights,
        })
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames},
        "profiles": out_profiles,
        "name": "ebpf-profiler",
        "activeProfileIndex": 0,
        "exporter": "ebpf-profiler",
    }


def write(profiles: Iterable[Profile], out: BinaryIO) -> None:
    doc = to_document(profiles)
    out.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    out.write(b"\n")


class SpeedscopeSink(WholeOutputSink):
    format = "speedscope"
    description = "the JSON file format of https://www.speedscope.app (file-format-schema.json)"

    def write_all(self, profiles: list[Profile]) -> None:
        write(profiles, self.out)


SINK = SpeedscopeSink
