"""pprof sink: gzipped profile.proto, as `go tool pprof` and Pyroscope's push API read it.

The protobuf encoding is written by hand: profile.proto
(github.com/google/pprof/proto/profile.proto) uses only varints and length-delimited fields,
so ~40 lines replace a dependency on `protobuf` plus generated code whose runtime version
would have to match. Field numbers below are the ones of that file; they never change.

Shape of the output:
- sample_type [samples/count, cpu/nanoseconds], period_type cpu/nanoseconds, period
  1e9/sample_rate (as Pyroscope's ebpf agent reports CPU time); each sample's values are
  [count, count * period].
- One Location per unique (mapping, absolute address, function lines). Inlined frames become
  several Lines of one Location, innermost first (profile.proto: "the last entry represents
  the caller into which the preceding entries were inlined").
- Every Location carries its function lines, including unresolved frames (named
  `libfoo.so+0x1a2b` or `[unknown]`), and mappings say has_functions, so pprof never tries to
  symbolize again with local binaries that may not match the recording host.
- Several Profiles (windows, label sets) go into one pprof: time_nanos/duration_nanos span
  them all and each sample carries its profile's labels.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from profiles.model import Frame, FrameKind, Profile, Stack
from symbolizer.sinks import WholeOutputSink

# profile.proto field numbers.
_P_SAMPLE_TYPE, _P_SAMPLE, _P_MAPPING, _P_LOCATION, _P_FUNCTION = 1, 2, 3, 4, 5
_P_STRING_TABLE, _P_TIME_NANOS, _P_DURATION_NANOS = 6, 9, 10
_P_PERIOD_TYPE, _P_PERIOD, _P_DEFAULT_SAMPLE_TYPE = 11, 12, 14

_WIRE_VARINT, _WIRE_LEN = 0, 2


def _varint(value: int) -> bytes:
    # Negative int64 values are encoded as their 64-bit two's complement (10 bytes).
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Msg:
    """Append-only protobuf message writer. Zero scalars are skipped (proto3 defaults)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def num(self, field: int, value: int) -> _Msg:
        if value:
            self.buf += _varint(field << 3 | _WIRE_VARINT) + _varint(value)
        return self

    def sub(self, field: int, value: bytes | _Msg) -> _Msg:
        data = value.buf if isinstance(value, _Msg) else value
        self.buf += _varint(field << 3 | _WIRE_LEN) + _varint(len(data)) + data
        return self

    def packed(self, field: int, values: Sequence[int]) -> _Msg:
        if values:
            self.sub(field, b"".join(_varint(v) for v in values))
        return self


class _Strings:
    """The string table: index 0 must be the empty string."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}

    def __call__(self, s: str | None) -> int:
        if not s:
            return 0
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.index)
        return i


@dataclass
class _Mapping:
    id: int
    object: str
    build_id: str | None
    bias: int | None  # page-aligned load bias (absolute - ELF address); None: no ELF address
    start: int
    limit: int


_PAGE_MASK = ~0xFFF


class _Builder:
    def __init__(self) -> None:
        self.strings = _Strings()
        self.mappings: dict[tuple[str, str | None, int | None], _Mapping] = {}
        self.functions: dict[tuple[str, str | None, int], int] = {}
        self.locations: dict[tuple[int, int, tuple[tuple[int, int], ...]], int] = {}
        self.samples: list[_Msg] = []
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.period: int | None = None

    # Mappings. The Profile has no mapping table of its own, so one is derived per object and
    # load bias (absolute address - ELF address): the same library at two ASLR bases in two
    # processes is two mappings, as in /proc/PID/maps. Its range spans the addresses seen.
    # The bias is rounded down to a page: the loader maps objects page-aligned, so the true
    # bias is a page multiple, while return-address frames carry the ELF address of addr - 1
    # (the call instruction) next to the absolute return address, one byte further.
    def mapping_for(self, frame: Frame) -> int:
        if frame.object is None or frame.kind is FrameKind.ROOT:
            return 0
        bias = None if frame.elf_addr is None else (frame.address - frame.elf_addr) & _PAGE_MASK
        key = (frame.object, frame.build_id, bias)
        m = self.mappings.get(key)
        if m is None:
            m = self.mappings[key] = _Mapping(
                id=len(self.mappings) + 1,
                object=frame.object,
                build_id=frame.build_id,
                bias=bias,
                start=frame.address,
                limit=frame.address + 1,
            )
        else:
            m.start = min(m.start, frame.address)
            m.limit = max(m.limit, frame.address + 1)
        return m.id

    def function_for(self, frame: Frame) -> int:
        key = (frame.name, frame.file, frame.start_line or 0)
        fid = self.functions.get(key)
        if fid is None:
            fid = self.functions[key] = len(self.functions) + 1
        return fid

    def location_for(self, group: Sequence[Frame]) -> int:
        """`group` is one physical frame followed by the frames inlined into it, root first."""
        outer = group[0]
        mapping_id = self.mapping_for(outer)
        lines = tuple((self.function_for(f), f.line or 0) for f in reversed(group))
        key = (mapping_id, outer.address, lines)
        lid = self.locations.get(key)
        if lid is None:
            lid = self.locations[key] = len(self.locations) + 1
        return lid

    def add_profile(self, profile: Profile) -> None:
        period = 1_000_000_000 // max(profile.sample_rate, 1)
        if self.period is None:
            self.period = period
        self.start_ns = min(profile.start_ns, self.start_ns or profile.start_ns)
        self.end_ns = max(profile.end_ns, self.end_ns or profile.end_ns)
        labels = dict(profile.labels)
        for stack, count in profile.stacks.items():
            if count <= 0:
                continue
            location_ids = [self.location_for(g) for g in _physical_frames(stack)]
            location_ids.reverse()  # pprof lists the leaf first
            sample = _Msg().packed(1, location_ids).packed(2, [count, count * period])
            sample_labels = labels
            if stack and stack[0].kind is FrameKind.ROOT and "comm" not in labels:
                sample_labels = {**labels, "comm": stack[0].name}
            for key, value in sample_labels.items():
                sample.sub(3, _Msg().num(1, self.strings(key)).num(2, self.strings(value)))
            self.samples.append(sample)

    def encode(self) -> bytes:
        s = self.strings
        msg = _Msg()
        msg.sub(_P_SAMPLE_TYPE, _Msg().num(1, s("samples")).num(2, s("count")))
        msg.sub(_P_SAMPLE_TYPE, _Msg().num(1, s("cpu")).num(2, s("nanoseconds")))
        for sample in self.samples:
            msg.sub(_P_SAMPLE, sample)
        for m in self.mappings.values():
            # file_offset: the Profile carries ELF virtual addresses, not file offsets, so the
            # offset given is the ELF address at memory_start (start - bias); address -
            # memory_start + file_offset is then the ELF address, which equals the file offset
            # for the usual layout of shared objects and PIEs (PT_LOAD offset == vaddr). pprof
            # uses it only to symbolize with local binaries, which has_functions turns off.
            msg.sub(
                _P_MAPPING,
                _Msg()
                .num(1, m.id)
                .num(2, m.start)
                .num(3, m.limit)
                .num(4, 0 if m.bias is None else m.start - m.bias)
                .num(5, s(m.object))
                .num(6, s(m.build_id))
                .num(7, 1)  # has_functions
                .num(8, 1)  # has_filenames
                .num(9, 1)  # has_line_numbers
                .num(10, 1),  # has_inline_frames
            )
        for (mapping_id, address, lines), lid in self.locations.items():
            loc = _Msg().num(1, lid).num(2, mapping_id).num(3, address)
            for function_id, line in lines:
                loc.sub(4, _Msg().num(1, function_id).num(2, line))
            msg.sub(_P_LOCATION, loc)
        for (name, filename, start_line), fid in self.functions.items():
            msg.sub(
                _P_FUNCTION,
                _Msg().num(1, fid).num(2, s(name)).num(3, s(name)).num(4, s(filename))
                .num(5, start_line),
            )
        # Strings last: every other field has interned its strings by now.
        period_type = _Msg().num(1, s("cpu")).num(2, s("nanoseconds"))
        for text in s.index:
            msg.sub(_P_STRING_TABLE, text.encode("utf-8", "surrogateescape"))
        start = self.start_ns or 0
        msg.num(_P_TIME_NANOS, start)
        msg.num(_P_DURATION_NANOS, max((self.end_ns or start) - start, 0))
        msg.sub(_P_PERIOD_TYPE, period_type)
        msg.num(_P_PERIOD, self.period or 0)
        msg.num(_P_DEFAULT_SAMPLE_TYPE, s("cpu"))
        return bytes(msg.buf)


def _physical_frames(stack: Stack) -> list[list[Frame]]:
    """Group a root-first stack into physical frames: a frame marked `inlined` was inlined
    into the frame before it (its caller), so it shares that frame's Location."""
    groups: list[list[Frame]] = []
    for frame in stack:
        if frame.inlined and groups and groups[-1][0].address == frame.address:
            groups[-1].append(frame)
        else:
            groups.append([frame])
    return groups


def _gzip(data: bytes) -> bytes:
    # mtime=0 keeps the output byte-for-byte reproducible (golden files, caching by content).
    return gzip.compress(data, compresslevel=6, mtime=0)


def encode_profiles(profiles: Iterable[Profile]) -> bytes:
    """profile.proto bytes (not gzipped) of the profiles merged into one pprof."""
    builder = _Builder()
    for profile in profiles:
        builder.add_profile(profile)
    return builder.encode()


def profile_to_pprof_bytes(profile: Profile) -> bytes:
    """Gzipped pprof of one Profile: the body the uploader sends with `format=pprof`."""
    return _gzip(encode_profiles([profile]))


def write(profiles: Iterable[Profile], out: BinaryIO) -> None:
    out.write(_gzip(encode_profiles(profiles)))


class PprofSink(WholeOutputSink):
    format = "pprof"
    description = "gzipped profile.proto, as `go tool pprof` and Pyroscope's push API read it"

    def write_all(self, profiles: list[Profile]) -> None:
        write(profiles, self.out)


SINK = PprofSink
