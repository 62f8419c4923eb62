"""A pprof body read back into folded stacks, with the project's generated profile_pb2.

Pyroscope reads a CPU pprof by its first sample value and makes sample labels series labels;
the test receiver puts the `comm` label back as the root frame (where the folded format has
the process name), so that pprof and folded uploads of one window compare stack by stack.
"""

from __future__ import annotations

import gzip

from google.protobuf.message import DecodeError

from profiles.pb import profile_pb2


class ProtoError(ValueError):
    pass


def decode_pprof(body: bytes) -> profile_pb2.Profile:
    """The Profile message of a pprof body, gzipped or not."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    prof = profile_pb2.Profile()
    try:
        prof.ParseFromString(body)
    except DecodeError as exc:
        raise ProtoError(str(exc)) from None
    if not prof.string_table or prof.string_table[0] != "":
        raise ProtoError("string table must start with the empty string")
    return prof


def _string(prof: profile_pb2.Profile, i: int) -> str:
    if not 0 <= i < len(prof.string_table):
        raise ProtoError(f"string index {i} outside the string table")
    return prof.string_table[i]


def pprof_to_folded(body: bytes, root_label: str = "comm") -> dict[str, int]:
    """Folded stacks (root first) with the first sample value; a sample's `root_label` label
    becomes its root frame."""
    p = decode_pprof(body)
    locations = {loc.id: loc for loc in p.location}
    functions = {f.id: f for f in p.function}
    stacks: dict[str, int] = {}
    for sample in p.sample:
        names: list[str] = []
        for lid in sample.location_id:  # leaf first in pprof
            loc = locations.get(lid)
            if loc is None:
                raise ProtoError(f"sample refers to missing location {lid}")
            if not loc.line:
                names.append(f"0x{loc.address:x}")
            # inlined lines are listed innermost first within one location
            for line in loc.line:
                fn = functions.get(line.function_id)
                names.append(_string(p, fn.name) if fn else f"0x{loc.address:x}")
        for label in sample.label:
            if _string(p, label.key) == root_label:
                names.append(_string(p, label.str))
        key = ";".join(reversed(names))
        stacks[key] = stacks.get(key, 0) + (sample.value[0] if sample.value else 0)
    return stacks
