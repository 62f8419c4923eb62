"""Profiles from folded names and back, for tests that only care about frame names."""

from __future__ import annotations

from profiles.model import Frame, FrameKind, Profile

S = 1_000_000_000


def profile(stacks: dict[str, int], start_s: float = 100, end_s: float = 110, rate: int = 100,
            labels: dict[str, str] | None = None) -> Profile:
    """A Profile whose stacks are `comm;frame;...;leaf` names (the first one the root)."""
    p = Profile(int(start_s * S), int(end_s * S), rate, dict(labels or {}))
    for text, count in stacks.items():
        p.add(tuple(Frame(n, FrameKind.ROOT if i == 0 else FrameKind.USER)
                    for i, n in enumerate(text.split(";"))), count)
    return p


def names(p: Profile) -> dict[str, int]:
    """The profile's stacks as `;`-joined names, counts of equal names summed."""
    out: dict[str, int] = {}
    for stack, count in p.stacks.items():
        key = ";".join(f.name for f in stack)
        out[key] = out.get(key, 0) + count
    return out
