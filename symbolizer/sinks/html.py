"""html sink: one self-contained interactive flame graph (inline CSS and JS, no network).

The page is flamegraph.html next to this module with the profile embedded as JSON in a
`<script type="application/json">` element. Symbol names come from the files being profiled,
so they are data, never markup: the JSON is escaped so that no `<`, `>` or `&` appears in it
(a name containing `</script>` cannot close the element), and the page's script puts names
into the DOM with textContent only. A Content-Security-Policy forbids any network access.

The call tree is sent flat, in preorder, as (name index, total, depth) triples: no nesting,
so neither json nor the browser recurses with the stack depth.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from symbolizer.model import Frame, FrameKind, Profile

FORMAT = "html"
TEMPLATE = "flamegraph.html"
_DATA_MARKER = "__PROFILE_DATA__"

_KINDS = [FrameKind.USER, FrameKind.KERNEL, FrameKind.VDSO, FrameKind.JIT, FrameKind.ROOT,
          FrameKind.PYTHON]
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}


class _Node:
    __slots__ = ("children", "total")

    def __init__(self) -> None:
        self.total = 0
        self.children: dict[int, _Node] = {}


class _Names:
    """Distinct frame descriptions: [name, kind code, file, unresolved reason, inlined]."""

    def __init__(self) -> None:
        self.entries: list[list[Any]] = []
        self.index: dict[tuple[Any, ...], int] = {}

    def __call__(self, frame: Frame) -> int:
        key = (frame.name, _KIND_CODE.get(frame.kind, 0), frame.file, frame.reason,
               int(frame.inlined))
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.entries)
            self.entries.append(list(key))
        return i


def _title(profiles: list[Profile]) -> str:
    if not profiles:
        return "ebpf-profiler flame graph (no samples)"
    start = datetime.fromtimestamp(min(p.start_ns for p in profiles) / 1e9, tz=UTC)
    end = datetime.fromtimestamp(max(p.end_ns for p in profiles) / 1e9, tz=UTC)
    windows = f"{len(profiles)} window{'s' if len(profiles) != 1 else ''}"
    return f"ebpf-profiler flame graph, {start:%Y-%m-%d %H:%M:%S}-{end:%H:%M:%S} UTC, {windows}"


def to_data(profiles: Iterable[Profile]) -> dict[str, Any]:
    """The JSON the page reads: names, flat preorder tree, title, sample rate, labels."""
    profiles = list(profiles)
    names = _Names()
    root = _Node()
    for profile in profiles:
        for stack, count in profile.stacks.items():
            if count <= 0:
                continue
            node = root
            node.total += count
            for frame in stack:
                key = names(frame)
                child = node.children.get(key)
                if child is None:
                    child = node.children[key] = _Node()
                child.total += count
                node = child
    # Preorder with an explicit stack; children by name, as flamegraph.pl sorts them, so the
    # same profile always draws the same picture.
    flat: list[int] = []
    todo: list[tuple[int, _Node, int]] = [(-1, root, 0)]
    while todo:
        name, node, depth = todo.pop()
        flat += (name, node.total, depth)
        kids = sorted(node.children.items(), key=lambda kv: names.entries[kv[0]][0], reverse=True)
        todo.extend((k, child, depth + 1) for k, child in kids)
    labels = sorted({f"{k}={v}" for p in profiles for k, v in p.labels.items()})
    return {
        "title": _title(profiles),
        "sampleRate": profiles[0].sample_rate if profiles else 0,
        "labels": labels,
        "kinds": [str(k) for k in _KINDS],
        "names": names.entries,
        "nodes": flat,
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
