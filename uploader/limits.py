"""The server's limits, enforced before sending so nothing is rejected or silently cut.

- Lines over 64 KiB: the legacy server reads the body with a 64 KiB line buffer and drops
  everything after a longer line without an error.
- Stack depth 1,000 (Grafana Pyroscope v1 `max-profile-stack-depth`).
  Both are handled by truncating the stack in the middle: the root (the process name, which
  the UI groups by) and the leaf-most frames (where the time is spent) are kept, the frames in
  between become one `[truncated N frames]` frame, and a warning says how many stacks changed.
  Stacks are cut as frames, before any body is encoded, so folded and pprof bodies carry the
  same truncated stacks.
- 16,000 unique stacks per upload (v1 `max-profile-symbol-value-length`/stack limits) and a
  4 MiB profile size: a window with more is sent as several uploads of the same window, which
  the server sums.
- Windows older than 1 hour or more than 10 minutes ahead are rejected by v1 servers.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

from profiles.folded import frame_text
from profiles.model import Frame, Profile, Stack
from recording.errors import UsageError

MAX_LINE_BYTES = 64 * 1024
MAX_DEPTH = 1000
MAX_STACKS = 16_000
MAX_BODY_BYTES = 3 * 1024 * 1024  # under the 4 MiB profile limit, with room for pprof framing
MAX_AGE_S = 3600
MAX_AHEAD_S = 600


def _text_bytes(frame: Frame) -> int:
    return len(frame_text(frame.name).encode()) + 1  # the name as folded writes it, and `;`


def _fits(stack: Stack, count_len: int) -> bool:
    return (len(stack) <= MAX_DEPTH
            and sum(_text_bytes(f) for f in stack) + count_len + 1 < MAX_LINE_BYTES)


def truncate_stack(stack: Stack, count: int) -> Stack:
    """The stack within both limits, measured on its frames as folded text writes them; the
    same frames then go into folded and pprof bodies alike."""
    count_len = len(str(count))
    if not stack or _fits(stack, count_len):
        return stack
    root, rest = stack[0], stack[1:]
    root_name = frame_text(root.name)[:4096]
    if root_name != root.name:
        root = replace(root, name=root_name)
    # Longest leaf-side suffix that fits next to the root and the marker.
    budget = MAX_LINE_BYTES - count_len - 64 - len(root_name.encode())
    kept: list[Frame] = []
    for f in reversed(rest):
        size = _text_bytes(f)
        if len(kept) + 3 > MAX_DEPTH or size > budget:
            break
        kept.append(f)
        budget -= size
    if not kept and rest:  # a single frame bigger than a line: cut its name
        leaf = frame_text(rest[-1].name).encode()[: max(budget - 1, 16)]
        kept = [replace(rest[-1], name=leaf.decode("utf-8", "ignore"))]
    kept.reverse()
    dropped = len(rest) - len(kept)
    marker = Frame(f"[truncated {dropped} frames]")
    return (root, marker, *kept)


def truncate_profile(profile: Profile) -> tuple[Profile, int]:
    """(the profile with every stack within the limits, number of stacks truncated)."""
    out = Profile(profile.start_ns, profile.end_ns, profile.sample_rate, dict(profile.labels))
    changed = 0
    for stack, count in profile.stacks.items():
        t = truncate_stack(stack, count)
        changed += t is not stack
        out.add(t, count)
    return out, changed


def split_profile(profile: Profile, max_stacks: int = MAX_STACKS,
                  max_bytes: int = MAX_BODY_BYTES) -> list[Profile]:
    """Profiles of the same window with at most max_stacks unique stacks and about max_bytes
    of folded text each (a pprof body of the same stacks is smaller)."""
    chunks: list[Profile] = []
    size = 0
    for stack, count in profile.stacks.items():
        line = sum(_text_bytes(f) for f in stack) + len(str(count)) + 1
        if not chunks or (chunks[-1].stacks and (len(chunks[-1].stacks) >= max_stacks
                                                 or size + line > max_bytes)):
            chunks.append(Profile(profile.start_ns, profile.end_ns, profile.sample_rate,
                                  dict(profile.labels)))
            size = 0
        chunks[-1].add(stack, count)
        size += line
    return chunks


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def check_age(from_ns: int, until_ns: int, *, allow_old: bool, now: float | None = None
              ) -> None:
    """Refuse windows a Grafana Pyroscope v1+ server would reject, saying what to do."""
    now = time.time() if now is None else now
    if allow_old:
        return
    age_s = now - from_ns / 1e9
    if age_s > MAX_AGE_S:
        raise UsageError(
            f"window {_when(from_ns)}..{_when(until_ns)} is {age_s / 3600:.1f} h old; Grafana "
            "Pyroscope v1+ rejects profiles older than 1 hour. Rerun with --retime to shift "
            "the windows to end now (keeping their spacing), or --allow-old for a legacy "
            "server or one with a larger validation.reject-older-than")
    ahead_s = until_ns / 1e9 - now
    if ahead_s > MAX_AHEAD_S:
        raise UsageError(
            f"window {_when(from_ns)}..{_when(until_ns)} is {ahead_s / 60:.0f} min in the "
            "future; servers reject profiles more than 10 minutes ahead. Check this host's "
            "clock, --from/--until, or use --retime")
