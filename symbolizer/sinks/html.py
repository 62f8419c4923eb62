"""html sink: one self-contained interactive flame graph (inline CSS and JS, no network).

The page is flamegraph.html next to this module with the profile embedded as JSON in a
`<script type="application/json">` element. Symbol names come from the files being profiled,
so they are data, never markup: the JSON is escaped so that no `<`, `>` or `&` appears in it
(a name containing `</script>` cannot close the element), and the page's script puts names
into the DOM with textContent only. A Content-Security-Policy forbids any network access.

One call tree per drain window (Profiles of the same window but other label sets are merged
into it); the page merges them for "all windows" and derives the inverted tree, the function
table and the sandwich from these trees, so nothing is sent twice. Each tree is sent flat, in
preorder, as (name index, total, depth) triples: no nesting, so neither json nor the browser
recurses with the stack depth.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from profiles.model import Frame, FrameKind, Profile
from symbolizer.sinks import WholeOutputSink

TEMPLATE = "flamegraph.html"
_DATA_MARKER = "__PROFILE_DATA__"

_KINDS = [FrameKind.USER, FrameKind.KERNEL, FrameKind.VDSO, FrameKind.JIT, FrameKind.ROOT,
          FrameKind.PYTHON]
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}
# Frames that carry no object path: name their object as perf script does for the kernel
# (`[kernel.kallsyms]`); JIT code lives in anonymous memory named only by a perf map.
_IMPLIED_OBJECT = {FrameKind.KERNEL: "[kernel.kallsyms]", FrameKind.JIT: "[JIT] (perf map)"}


class _Objects:
    """Distinct objects: [path, build ID or None], so each path is sent once."""

    def __init__(self) -> None:
        self.entries: list[list[str | None]] = []
        self.index: dict[tuple[str, str | None], int] = {}

    def __call__(self, frame: Frame) -> int:
        path = frame.object or _IMPLIED_OBJECT.get(frame.kind)
        if path is None:
            return -1
        key = (path, frame.build_id)
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.entries)
            self.entries.append(list(key))
        return i


class _Names:
    """Distinct frame descriptions: [name, kind code, file, unresolved reason, inlined,
    object index or -1]."""

    def __init__(self) -> None:
        self.entries: list[list[Any]] = []
        self.index: dict[tuple[Any, ...], int] = {}
        self.objects = _Objects()
        # Stacks share Frame objects: a lookup by the frame itself (hash cached, identity
        # compared first) saves building the key for every frame of every stack.
        self.by_frame: dict[Frame, int] = {}

    def __call__(self, frame: Frame) -> int:
        i = self.by_frame.get(frame)
        if i is None:
            i = self.by_frame[frame] = self._entry(frame)
        return i

    def _entry(self, frame: Frame) -> int:
        key = (frame.name, _KIND_CODE.get(frame.kind, 0), frame.file, frame.reason,
               int(frame.inlined), self.objects(frame))
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.entries)
            self.entries.append(list(key))
        return i


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _title(profiles: list[Profile]) -> str:
    if not profiles:
        return "ebpf-profiler flame graph (no samples)"
    start = _utc(min(p.start_ns for p in profiles))
    end = _utc(max(p.end_ns for p in profiles))
    n = len({(p.start_ns, p.end_ns) for p in profiles})
    windows = f"{n} window{'s' if n != 1 else ''}"
    return f"ebpf-profiler flame graph, {start:%Y-%m-%d %H:%M:%S}-{end:%H:%M:%S} UTC, {windows}"


def _flat_tree(profiles: list[Profile], names: _Names) -> tuple[list[int], int]:
    """The merged call tree of the profiles as flat preorder triples, and its total.

    Children go by name, as flamegraph.pl sorts them, so the same profile always draws the
    same picture (the page sorts the trees it derives alike). Preorder with sorted children
    is the lexicographic order of the stacks, so the tree is the sorted stacks with their
    common prefixes shared: no node objects (a tree of a million Python objects spends most
    of its time in the garbage collector).
    """
    counts: dict[tuple[int, ...], int] = {}
    for profile in profiles:
        for stack, count in profile.stacks.items():
            if count > 0:
                key = tuple(map(names, stack))
                counts[key] = counts.get(key, 0) + count
    order = sorted(range(len(names.entries)), key=lambda i: (names.entries[i][0], i))
    rank = [0] * len(order)
    for r, i in enumerate(order):
        rank[i] = r
    ranked = sorted((tuple(map(rank.__getitem__, key)), count) for key, count in counts.items())
    flat = [-1, 0, 0]
    prev: tuple[int, ...] = ()
    for key, count in ranked:
        n, m = 0, min(len(prev), len(key))
        while n < m and prev[n] == key[n]:
            n += 1
        for depth in range(n, len(key)):
            flat += (order[key[depth]], 0, depth + 1)
        # Keys are distinct, and a prefix sorts before its extensions: each key adds at least
        # its leaf, which gets the key's samples as its self samples for now.
        if key:
            flat[-2] = count
        else:
            flat[1] += count
        prev = key
    # Totals from self samples, bottom up: in reverse preorder a node comes after all of its
    # descendants, and below[d] sums the totals of the depth-d nodes since the last node
    # above them.
    below = [0] * (max((len(k) for k, _ in ranked), default=0) + 2)
    for i in range(len(flat) - 3, -1, -3):
        depth = flat[i + 2]
        total = flat[i + 1] + below[depth + 1]
        below[depth + 1] = 0
        below[depth] += total
        flat[i + 1] = total
    return flat, flat[1]


def to_data(profiles: Iterable[Profile]) -> dict[str, Any]:
    """The JSON the page reads: names, objects, one flat preorder tree per window, title,
    sample rate, labels."""
    profiles = list(profiles)
    names = _Names()
    by_window: dict[tuple[int, int], list[Profile]] = {}
    for p in profiles:
        by_window.setdefault((p.start_ns, p.end_ns), []).append(p)
    windows = []
    for (start, end), group in sorted(by_window.items()):
        flat, total = _flat_tree(group, names)
        if total <= 0:
            continue
        windows.append({
            # Milliseconds: nanoseconds since 1970 do not fit a JavaScript number exactly.
            "startMs": start // 1_000_000,
            "endMs": end // 1_000_000,
            "label": f"{_utc(start):%H:%M:%S}-{_utc(end):%H:%M:%S}",
            "nodes": flat,
        })
    labels = sorted({f"{k}={v}" for p in profiles for k, v in p.labels.items()})
    return {
        "title": _title(profiles),
        "sampleRate": profiles[0].sample_rate if profiles else 0,
        "labels": labels,
        "kinds": [str(k) for k in _KINDS],
        "objects": names.objects.entries,
        "names": names.entries,
        "windows": windows,
    }


def _script_safe_json(data: dict[str, Any]) -> str:
    # ensure_ascii also escapes U+2028/U+2029; the replacements keep `</script>`, `<!--` and
    # entity-looking text out of the element whatever the names contain.
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(profiles: Iterable[Profile]) -> str:
    template = Path(__file__).with_name(TEMPLATE).read_text(encoding="utf-8")
    return template.replace(_DATA_MARKER, _script_safe_json(to_data(profiles)), 1)


def write(profiles: Iterable[Profile], out: BinaryIO) -> None:
    out.write(render(profiles).encode("utf-8"))


class HtmlSink(WholeOutputSink):
    format = "html"
    description = "one self-contained interactive flame graph (inline CSS and JS, no network)"
    per_drain_windows = True  # the page merges them for "all windows" and selects one

    def write_all(self, profiles: list[Profile]) -> None:
        write(profiles, self.out)


SINK = HtmlSink
