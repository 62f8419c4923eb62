"""Just enough protobuf to read a pprof profile.proto back into folded stacks.

Field numbers are those of github.com/google/pprof/proto/profile.proto.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator


class ProtoError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ProtoError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) triples; value is int or bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
            yield num, wire, v
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtoError("truncated length-delimited field")
            yield num, wire, buf[i : i + n]
            i += n
        elif wire == 1:
            yield num, wire, int.from_bytes(buf[i : i + 8], "little")
            i += 8
        elif wire == 5:
            yield num, wire, int.from_bytes(buf[i : i + 4], "little")
            i += 4
        else:
            raise ProtoError(f"unsupported wire type {wire}")


def _ints(wire: int, v: int | bytes) -> list[int]:
    if wire == 0:
        assert isinstance(v, int)
        return [v]
    assert isinstance(v, bytes)
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


def decode_pprof(body: bytes) -> dict:
    """Return {strings, sample_types, samples: [(location ids, values)], locations, functions,
    mappings, period, time_nanos, duration_nanos}."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    strings: list[str] = []
    samples: list[tuple[list[int], list[int]]] = []
    locations: dict[int, dict] = {}
    functions: dict[int, dict] = {}
    mappings: dict[int, dict] = {}
    sample_types: list[tuple[int, int]] = []
    out: dict = {"period": 0, "time_nanos": 0, "duration_nanos": 0}
    for num, _wire, v in fields(body):
        if num == 6:
            assert isinstance(v, bytes)
            strings.append(v.decode())
        elif num == 1:
            assert isinstance(v, bytes)
            st = {n: x for n, _, x in fields(v)}
            sample_types.append((int(st.get(1, 0)), int(st.get(2, 0))))
        elif num == 2:
            assert isinstance(v, bytes)
            locs: list[int] = []
            vals: list[int] = []
            for n, w, x in fields(v):
                if n == 1:
                    locs += _ints(w, x)
                elif n == 2:
                    vals += _ints(w, x)
            samples.append((locs, vals))
        elif num == 3:
            assert isinstance(v, bytes)
            m = {n: x for n, _, x in fields(v)}
            mappings[int(m.get(1, 0))] = m
        elif num == 4:
            assert isinstance(v, bytes)
            loc: dict = {"lines": []}
            for n, _, x in fields(v):
                if n == 4:
                    assert isinstance(x, bytes)
                    line = {ln: lx for ln, _, lx in fields(x)}
                    loc["lines"].append(int(line.get(1, 0)))
                else:
                    loc[n] = x
            locations[int(loc.get(1, 0))] = loc
        elif num == 5:
            assert isinstance(v, bytes)
            f = {n: x for n, _, x in fields(v)}
            functions[int(f.get(1, 0))] = f
        elif num == 12:
            out["period"] = v
        elif num == 9:
            out["time_nanos"] = v
        elif num == 10:
            out["duration_nanos"] = v
    if not strings or strings[0] != "":
        raise ProtoError("string table must start with the empty string")
    out.update(strings=strings, sample_types=sample_types, samples=samples,
               locations=locations, functions=functions, mappings=mappings)
    return out


def pprof_to_folded(body: bytes) -> dict[str, int]:
    """Folded stacks (root first) with the first sample value, as Pyroscope reads a CPU pprof."""
    p = decode_pprof(body)
    strings = p["strings"]
    stacks: dict[str, int] = {}
    for locs, vals in p["samples"]:
        names: list[str] = []
        for lid in locs:  # leaf first in pprof
            loc = p["locations"].get(lid)
            if loc is None:
                raise ProtoError(f"sample refers to missing location {lid}")
            # inlined lines are listed innermost first within one location
            for fid in loc["lines"] or [0]:
                fn = p["functions"].get(fid)
                names.append(strings[int(fn.get(2, 0))] if fn else f"0x{loc.get(3, 0):x}")
        key = ";".join(reversed(names))
        stacks[key] = stacks.get(key, 0) + (vals[0] if vals else 0)
    return stacks
