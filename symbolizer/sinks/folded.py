"""Folded stacks: `comm;root;...;leaf COUNT`, as Brendan Gregg's stackcollapse tools write and
Pyroscope's /ingest reads, with the header-comment convention of docs/recording-format.md:
`# ebpf-profiler {json}` before each block, and in stream mode `# ebpf-profiler-window-end`
after each window.
"""

from __future__ import annotations

import json
import re

from symbolizer.model import Profile
from symbolizer.sinks import Sink, register

HEADER = "# ebpf-profiler "
WINDOW_END = "# ebpf-profiler-window-end\n"


def frame_text(name: str) -> str:
    # ';' separates frames and a newline ends the line; stackcollapse-perf.pl rewrites them too.
    return name.replace(";", ":").replace("\n", " ").replace("\r", " ") or "[unknown]"


# Readers take a line starting with `#` for a comment, and a process names itself `#...` with
# one prctl(PR_SET_NAME): its stacks would vanish. Such a line gets a `\` in front (shown as is
# by flamegraph.pl and speedscope), as does one already starting with backslashes and `#`, so
# uploader/folded.py drops exactly one `\` from a line matching `\+#` and gets the name back.
_NEEDS_ESCAPE = re.compile(r"\\*#")
_ESCAPED = re.compile(r"\\+#")


def escape_line(line: str) -> str:
    return "\\" + line if _NEEDS_ESCAPE.match(line) else line


def unescape_line(line: str) -> str:
    return line[1:] if _ESCAPED.match(line) else line


def folded_lines(profile: Profile) -> list[str]:
    """`stack count` lines of one profile, stacks with equal names merged, sorted."""
    merged: dict[str, int] = {}
    for stack, count in profile.stacks.items():
        key = ";".join(frame_text(f.name) for f in stack)
        merged[key] = merged.get(key, 0) + count
    return [f"{k} {n}" for k, n in sorted(merged.items()) if n > 0]


def header(profile: Profile) -> str:
    meta = {"from_ns": profile.start_ns, "until_ns": profile.end_ns,
            "sample_rate": profile.sample_rate, "labels": profile.labels}
    return HEADER + json.dumps(meta) + "\n"


@register
class FoldedSink(Sink):
    format = "folded"
    description = "folded stacks (Brendan Gregg / Pyroscope), one header per window"

    def write_profile(self, profile: Profile) -> None:
        text = header(profile) + "".join(escape_line(line) + "\n"
                                         for line in folded_lines(profile))
        self.out.write(text.encode("utf-8", "replace"))

    def end_window(self) -> None:
        if self.options.stream:
            self.out.write(WINDOW_END.encode())
        self.out.flush()
