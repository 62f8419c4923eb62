"""Folded stacks (Brendan Gregg / Pyroscope) with a `# ebpf-profiler {json}` header before each
block and, in stream mode, `# ebpf-profiler-window-end` after each window: the codec of
profiles/folded.py, which ebpf-upload reads back.
"""

from __future__ import annotations

from profiles.folded import WINDOW_END, FoldedStyle, write_block
from profiles.model import Profile
from symbolizer.sinks import Sink


class FoldedSink(Sink):
    format = "folded"
    description = "folded stacks (Brendan Gregg / Pyroscope), one header per window"

    def write_profile(self, profile: Profile) -> None:
        o = self.options
        style = FoldedStyle(kernel_annotations=o.kernel_annotations, per_pid=o.per_pid,
                            headers=o.headers)
        self.out.write(write_block(profile, style).encode("utf-8", "replace"))

    def end_window(self) -> None:
        if self.options.stream and self.options.headers:
            self.out.write(WINDOW_END.encode() + b"\n")
        self.out.flush()


SINK = FoldedSink
