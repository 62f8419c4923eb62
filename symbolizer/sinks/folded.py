"""Folded stacks (Brendan Gregg / Pyroscope) with a `# ebpf-profiler {json}` header before each
block and, in stream mode, `# ebpf-profiler-window-end` after each window: the codec of
profiles/folded.py, which ebpf-upload reads back.
"""

from __future__ import annotations

from profiles.folded import WINDOW_END, write_block
from profiles.model import Profile
from symbolizer.sinks import Sink


class FoldedSink(Sink):
    format = "folded"
    description = "folded stacks (Brendan Gregg / Pyroscope), one header per window"

    def write_profile(self, profile: Profile) -> None:
        self.out.write(write_block(profile).encode("utf-8", "replace"))

    def end_window(self) -> None:
        if self.options.stream:
            self.out.write(WINDOW_END.encode() + b"\n")
        self.out.flush()


SINK = FoldedSink
