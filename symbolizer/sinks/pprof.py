"""pprof sink: gzipped profile.proto, as `go tool pprof` and Pyroscope read it.

The messages are profiles/pb/profile_pb2 (proto/profiles/pb/profile.proto, `make proto`).

Shape of the output:
- sample_type [samples/count, cpu/nanoseconds], period_type cpu/nanoseconds, period
  1e9/sample_rate (as Pyroscope's ebpf agent reports CPU time); each sample's values are
  [count, count * period].
- Mappings are the recorded ones (Frame.mapping: start, limit, file offset, path, build ID
  of the /proc/PID/maps line the address fell in), so that a tool with the binaries, found
  by build ID or path, can symbolize the addresses itself: `go tool pprof -symbolize=local`
  computes address - start + offset. The main executable comes first (pprof prints its file
  as `File:`): the mapping most samples start in.
- has_functions/has_filenames/has_line_numbers/has_inline_frames are set on a mapping only
  when every location in it has them: pprof re-symbolizes a mapping only when none of the
  first three is set (and Grafana Pyroscope skips a mapping that says has_functions), so a
  mapping whose frames are `truth+0x11b7` must not claim to be symbolized.
- Frames without a recorded mapping (the kernel, Python code objects, addresses outside
  every mapping, names read from folded text) get one stand-in mapping per kind,
  `[kernel.kallsyms]`, `[python]`, `[unknown]`, spanning the addresses seen: no location is
  left without a mapping.
- One Location per unique (mapping, absolute address, function lines). Inlined frames become
  several Lines of one Location, innermost first (the last Line is the function the others
  were inlined into). Unresolved frames keep their name (`libfoo.so+0x1a2b`, `[unknown]`) as
  their function, for readers without the binaries.
- The process name that roots each folded stack is not a frame here but the sample label
  `comm`, as Pyroscope's own pprof profiles carry it.
- Several Profiles (windows, label sets) go into one pprof: time_nanos/duration_nanos span
  them all and each sample carries its profile's labels.

Speed: frames are shared objects (the resolver caches one per address), so each distinct
frame is turned into a location once and found again by a dict lookup on the Frame; the
messages are built once at the end.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from profiles.model import Frame, FrameKind, MappingInfo, Profile, Stack
from profiles.pb import profile_pb2
from symbolizer.sinks import WholeOutputSink

# Stand-in mapping names for frames without a recorded mapping, by kind; names in brackets
# are what pprof treats as not a file (it never tries to open them).
_STAND_IN = {
    FrameKind.KERNEL: "[kernel.kallsyms]",
    FrameKind.PYTHON: "[python]",
    FrameKind.JIT: "[anon]",
    FrameKind.VDSO: "[vdso]",
}
_UNKNOWN_MAPPING = "[unknown]"
_ROOT_LABEL = "comm"


class _Mapping:
    """A pprof mapping being built: its range, and whether all its locations have names,
    files, lines (flags ANDed over its locations)."""

    __slots__ = (
        "build_id",
        "file_offset",
        "filenames",
        "fixed",
        "functions",
        "inline",
        "limit",
        "lines",
        "path",
        "start",
    )

    def __init__(self, path: str, build_id: str | None, start: int, limit: int,
                 file_offset: int, fixed: bool) -> None:
        self.path, self.build_id = path, build_id
        self.start, self.limit, self.file_offset = start, limit, file_offset
        self.fixed = fixed  # a recorded range: not widened by the addresses seen
        self.functions = self.filenames = self.lines = self.inline = True

    def add(self, address: int, group: tuple[Frame, ...]) -> None:
        if not self.fixed:
            self.start = min(self.start, address)
            self.limit = max(self.limit, address + 1)
        for f in group:
            if f.reason is not None:
                self.functions = False
            if not f.file:
                self.filenames = False
            if not f.line:
                self.lines = False
        if group[0].kind is FrameKind.PYTHON:
            self.inline = False  # CPython has no inlining; nothing says it was looked for


@dataclass
class _Location:
    mapping: int  # index into _Builder.mappings
    address: int
    lines: tuple[tuple[int, int], ...]  # (function id, line), innermost first


class _Builder:
    def __init__(self) -> None:
        self.strings: dict[str, int] = {"": 0}  # string_table[0] must be ""
        self.mappings: list[_Mapping] = []
        self._mapping_index: dict[object, int] = {}
        self.functions: dict[tuple[str, str | None, int], int] = {}
        self.locations: list[_Location] = []
        self._location_ids: dict[tuple[int, int, tuple[tuple[int, int], ...]], int] = {}
        # the caches that make this fast: Frame (or inlined group) -> location id
        self._by_frame: dict[Frame, int] = {}
        self._by_group: dict[tuple[Frame, ...], int] = {}
        # (location ids leaf first, count, labels key)
        self.samples: list[tuple[list[int], int, tuple[tuple[int, int], ...]]] = []
        self.main_votes: Counter[int] = Counter()  # mapping index -> samples starting there
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.period: int | None = None

    def s(self, text: str | None) -> int:
        if not text:
            return 0
        i = self.strings.get(text)
        if i is None:
            i = self.strings[text] = len(self.strings)
        return i

    def _mapping_of(self, frame: Frame) -> int:
        m: MappingInfo | None = frame.mapping
        key: object
        if m is not None:
            key = m
        else:
            # no recorded mapping: one stand-in per object (or kind), ranged by what is seen
            key = (frame.object or _STAND_IN.get(frame.kind, _UNKNOWN_MAPPING),
                   frame.build_id)
        i = self._mapping_index.get(key)
        if i is None:
            i = self._mapping_index[key] = len(self.mappings)
            if m is not None:
                self.mappings.append(_Mapping(m.path, m.build_id, m.start, m.limit,
                                              m.file_offset, True))
            else:
                path, bid = key  # type: ignore[misc]
                self.mappings.append(_Mapping(path, bid, frame.address, frame.address + 1,
                                              0, False))
        return i

    def _function(self, f: Frame) -> int:
        key = (f.name, f.file, f.start_line or 0)
        fid = self.functions.get(key)
        if fid is None:
            fid = self.functions[key] = len(self.functions) + 1
        return fid

    def _location(self, group: tuple[Frame, ...]) -> int:
        """A new physical frame: `group` is the frame and the frames inlined into it, root
        first."""
        outer = group[0]
        mi = self._mapping_of(outer)
        lines = tuple((self._function(f), f.line or 0) for f in reversed(group))
        key = (mi, outer.address, lines)
        lid = self._location_ids.get(key)
        if lid is None:
            self.locations.append(_Location(mi, outer.address, lines))
            lid = self._location_ids[key] = len(self.locations)
            self.mappings[mi].add(outer.address, group)
        return lid

    def _location_ids_of(self, stack: Stack) -> list[int]:
        """Location ids of a root-first stack, leaf first; the root frame is left out."""
        frames = stack[1:] if stack and stack[0].kind is FrameKind.ROOT else stack
        try:
            # every frame seen before, none inlined: one lookup per frame
            out = list(map(self._by_frame.__getitem__, frames))
        except KeyError:
            out = self._slow_location_ids(frames)
        out.reverse()  # pprof lists the leaf first
        return out

    def _slow_location_ids(self, frames: Stack) -> list[int]:
        """A frame not seen yet, or inlined frames: group each frame with the frames inlined
        into it (the frames after it marked `inlined`, at its address). Inlined frames are
        never cached alone, so the fast path cannot split a group."""
        by_frame, by_group = self._by_frame, self._by_group
        out: list[int] = []
        n = len(frames)
        i = 0
        while i < n:
            f = frames[i]
            j = i + 1
            while j < n and frames[j].inlined and frames[j].address == f.address:
                j += 1
            if j == i + 1 and not f.inlined:
                lid = by_frame.get(f)
                if lid is None:
                    lid = by_frame[f] = self._location((f,))
            else:
                group = frames[i:j]
                lid = by_group.get(group)
                if lid is None:
                    lid = by_group[group] = self._location(group)
            out.append(lid)
            i = j
        return out

    def add_profile(self, profile: Profile) -> None:
        period = 1_000_000_000 // max(profile.sample_rate, 1)
        if self.period is None:
            self.period = period
        self.start_ns = min(profile.start_ns, self.start_ns or profile.start_ns)
        self.end_ns = max(profile.end_ns, self.end_ns or profile.end_ns)
        s = self.s
        labels = tuple((s(k), s(v)) for k, v in profile.labels.items())
        with_root: dict[str, tuple[tuple[int, int], ...]] = {}
        add_root = _ROOT_LABEL not in profile.labels
        root_key = s(_ROOT_LABEL)
        locations = self.locations
        votes = self.main_votes
        for stack, count in profile.stacks.items():
            if count <= 0:
                continue
            lids = self._location_ids_of(stack)
            sample_labels = labels
            if add_root and stack and stack[0].kind is FrameKind.ROOT:
                comm = stack[0].name
                sample_labels = with_root.get(comm) or with_root.setdefault(
                    comm, (*labels, (root_key, s(comm))))
            if lids:
                votes[locations[lids[-1] - 1].mapping] += count
            self.samples.append((lids, count, sample_labels))

    def _mapping_order(self) -> list[int]:
        """Mapping indices in output order: the main executable first (the mapping most
        stacks start in, among real files), the others as first seen."""
        order = list(range(len(self.mappings)))
        files = [i for i in order if not self.mappings[i].path.startswith("[")]
        if files:
            main = max(files, key=lambda i: (self.main_votes[i], -i))
            order.remove(main)
            order.insert(0, main)
        return order

    def encode(self) -> bytes:
        prof = profile_pb2.Profile()
        s = self.s
        prof.sample_type.add(type=s("samples"), unit=s("count"))
        prof.sample_type.add(type=s("cpu"), unit=s("nanoseconds"))
        period = self.period or 0
        label_msgs: dict[tuple[tuple[int, int], ...], list[profile_pb2.Label]] = {}
        for lids, count, labels in self.samples:
            msgs = label_msgs.get(labels)
            if msgs is None:
                msgs = label_msgs[labels] = [profile_pb2.Label(key=k, str=v)
                                             for k, v in labels]
            prof.sample.add(location_id=lids, value=(count, count * period), label=msgs)
        order = self._mapping_order()
        new_id = {old: pos + 1 for pos, old in enumerate(order)}
        for old in order:
            m = self.mappings[old]
            prof.mapping.add(
                id=new_id[old], memory_start=m.start, memory_limit=m.limit,
                file_offset=m.file_offset, filename=s(m.path), build_id=s(m.build_id),
                has_functions=m.functions, has_filenames=m.filenames,
                has_line_numbers=m.lines,
                # DWARF lines (--lines) come with the inlined calls expanded
                has_inline_frames=m.inline and m.lines and m.filenames)
        for lid, loc in enumerate(self.locations, 1):
            prof.location.add(id=lid, mapping_id=new_id[loc.mapping], address=loc.address,
                              line=[profile_pb2.Line(function_id=f, line=n)
                                    for f, n in loc.lines])
        for (name, filename, start_line), fid in self.functions.items():
            prof.function.add(id=fid, name=s(name), system_name=s(name),
                              filename=s(filename), start_line=start_line)
        prof.period_type.type = s("cpu")
        prof.period_type.unit = s("nanoseconds")
        prof.default_sample_type = s("cpu")
        start = self.start_ns or 0
        prof.time_nanos = start
        prof.duration_nanos = max((self.end_ns or start) - start, 0)
        prof.period = period
        # strings last: every other field has interned its strings by now
        prof.string_table.extend(self.strings)
        return prof.SerializeToString()


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
    """Gzipped pprof of one Profile: the body the uploader sends with `format=pprof` and
    inside a push request."""
    return _gzip(encode_profiles([profile]))


def write(profiles: Iterable[Profile], out: BinaryIO) -> None:
    out.write(_gzip(encode_profiles(profiles)))


class PprofSink(WholeOutputSink):
    format = "pprof"
    description = "gzipped profile.proto, as `go tool pprof` and Pyroscope read it"

    def write_all(self, profiles: list[Profile]) -> None:
        write(profiles, self.out)


SINK = PprofSink
