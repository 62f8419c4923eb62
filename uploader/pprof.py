"""Folded stacks -> gzipped pprof for `--format pprof`, through the symbolizer's pprof sink
(symbolizer/sinks/pprof.py) so the project has one profile.proto encoder.

Folded text carries only frame names, so locations have no address or mapping here; build IDs
and addresses reach a server only from pprof that ebpf-symbolize writes from a recording.
"""

from __future__ import annotations

from symbolizer.model import Frame, FrameKind, Profile
from symbolizer.sinks.pprof import profile_to_pprof_bytes


def encode_pprof(stacks: dict[str, int], *, sample_rate: int, from_ns: int, until_ns: int
                 ) -> bytes:
    profile = Profile(start_ns=from_ns, end_ns=until_ns, sample_rate=sample_rate)
    for stack, count in stacks.items():
        names = stack.split(";")
        # The agent roots each stack at the process name; mark it so pprof labels it `comm`.
        frames = tuple(Frame(name=n, kind=FrameKind.ROOT if i == 0 else FrameKind.USER)
                       for i, n in enumerate(names))
        profile.add(frames, count)
    return profile_to_pprof_bytes(profile)
