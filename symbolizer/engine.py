"""Recording batches in, the Profiles of each closed drain window out (one per label set).

Rows other than samples (processes, mappings, objects, kernel symbols, perf maps, meta) feed
the mapping index and the resolver. Samples wait in their drain window until its `window` row
closes it (or the input ends), then the window's unique addresses are resolved together and
its stacks built: `comm; user frames root..leaf; kernel frames root..leaf`, as Pyroscope's
agent roots each stack at the process name.

Each window is split by the labels a `Labeler` gives each process (the service discovery of
uploader/discovery, from the cgroup and container ID its `process` row recorded), so that
different services end up in different uploads, as Pyroscope's agent sends them. A labeler
may answer None: the process is dropped (--only-services) and its samples counted.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from recording.schema import RecordType
from symbolizer.model import Frame, FrameKind, Profile
from symbolizer.normalize import Mapping, MappingIndex, ObjectInfo, Snapshot, loads_from_phdrs
from symbolizer.options import SymbolizeOptions
from symbolizer.report import Unresolved, UnresolvedReport
from symbolizer.resolve import UNKNOWN, LinesFn, Resolver

DEFAULT_SAMPLE_RATE = 100
# (cgroup, container_id) of a process -> its labels, or None to drop it
Labeler = Callable[[str | None, str | None], dict[str, str] | None]
LabelKey = tuple[tuple[str, str], ...]
_DROPPED_COMMS_KEPT = 1000  # names kept for the --only-services report, so it stays bounded
_LOST = {
    -errno.EEXIST: "stack lost: stack map hash collision (EEXIST)",
    -errno.ENOMEM: "stack lost: stack map full (ENOMEM)",
}

_META_RECORDS = [r.value for r in (RecordType.META, RecordType.PROCESS, RecordType.MAPPING,
                                   RecordType.OBJECT, RecordType.KSYM, RecordType.KMOD,
                                   RecordType.PERFMAP)]


@dataclass(frozen=True)
class SampleRow:
    window_start_ns: int
    window_end_ns: int
    pid: int
    comm: str
    count: int
    user_stack: list[int]
    kernel_stack: list[int]
    user_stack_error: int | None
    kernel_stack_error: int | None


def _rows(batch: pa.RecordBatch, record: str | list[str]) -> list[dict]:
    col = batch.column("record")
    mask = pc.is_in(col, pa.array(record)) if isinstance(record, list) else pc.equal(col, record)
    picked = batch.filter(mask)
    return picked.to_pylist() if picked.num_rows else []


# docs/recording-format.md "Long runs": the recorder forgets a process not sampled for 60 s
# and snapshots it anew (higher maps_seq) before its next samples, so a stream reader may drop
# a pid not sampled for twice that.
STREAM_FORGET_AFTER_NS = 120 * 10**9
_SWEEP_EVERY_NS = 10 * 10**9
_ROOTS_KEPT = 4096  # process-name root frames; rebuilt when a run has more distinct names


class Engine:
    def __init__(self, options: SymbolizeOptions, lines_fn: LinesFn | None = None,
                 labeler: Labeler | None = None, forget_after_ns: int | None = None) -> None:
        """forget_after_ns: in a stream, drop what is kept for a pid (snapshots, resolved
        frames, perf map) once it has not been sampled for this long, and snapshots that
        newer ones superseded; None keeps everything (a file: its snapshots are read first)."""
        self.options = options
        self.labeler = labeler
        self.forget_after_ns = forget_after_ns
        self._last_seen: dict[int, int] = {}  # pid -> end of the last window it was sampled in
        self._stream_ns = 0  # end of the latest closed window
        self._next_sweep_ns = 0
        self.dropped_samples = 0  # samples of processes the labeler dropped
        self.dropped_comms: Counter[str] = Counter()
        self.index = MappingIndex()
        self.resolver = Resolver(options, self.index, lines_fn)
        self.report = UnresolvedReport()
        self.meta: dict[str, str] = {}
        self.total_samples = 0
        self.windows_closed = 0
        self._pending: dict[tuple[int, int], list[SampleRow]] = {}
        self._roots: dict[str, Frame] = {}

    @property
    def sample_rate(self) -> int:
        try:
            return int(float(self.meta.get("sample_rate_hz", DEFAULT_SAMPLE_RATE)))
        except ValueError:
            return DEFAULT_SAMPLE_RATE

    # --- input ---------------------------------------------------------------------------
    def feed_metadata(self, batch: pa.RecordBatch) -> None:
        for r in _rows(batch, _META_RECORDS):
            self._meta_row(r)

    def feed(self, batch: pa.RecordBatch, *, metadata: bool = True) -> list[list[Profile]]:
        """Take one batch; return the drain windows it closed, in order, each as its Profiles
        (one per label set, sorted by labels; one unlabelled empty Profile when the window
        had no samples, so that empty windows still reach the output)."""
        closed: list[list[Profile]] = []
        wanted = ["sample", "window", *(_META_RECORDS if metadata else [])]
        for r in _rows(batch, wanted):
            kind = r["record"]
            if kind == "sample":
                self._add_sample(r)
            elif kind == "window":
                key = (r["window_start_ns"] or 0, r["window_end_ns"] or 0)
                closed.append(self._close(key))
            else:
                self._meta_row(r)
        return closed

    def finish(self) -> list[list[Profile]]:
        """Windows whose `window` row never came (a recorder that was killed)."""
        return [self._close(key) for key in sorted(self._pending)]

    def _meta_row(self, r: dict) -> None:
        kind = r["record"]
        if kind == "meta" and r["key"] is not None:
            self.meta[r["key"]] = r["value"] or ""
        elif kind == "process" and r["pid"] is not None:
            self.index.add_process(r["pid"], r["maps_seq"] or 0, r["time_ns"] or 0,
                                   r["cgroup"], r["container_id"])
            self._seen(r["pid"], max(r["time_ns"] or 0, self._stream_ns))
        elif kind == "mapping" and r["pid"] is not None and r["start"] is not None:
            self.index.add_mapping(r["pid"], r["maps_seq"] or 0, Mapping(
                r["start"], r["end"] or r["start"], r["file_offset"] or 0, r["path"] or "",
                r["object_id"]))
        elif kind == "object" and r["object_id"]:
            self.index.add_object(ObjectInfo(
                r["object_id"], r["path"] or "", r["build_id"], r["elf_type"],
                loads_from_phdrs(r["phdrs"]), r["data"], r["reason"]))
        elif kind == "ksym" and r["addr"] is not None and r["name"]:
            self.resolver.add_ksym(r["addr"], r["size"] or 0, r["name"])
        elif kind == "kmod" and r["addr"] is not None and r["name"]:
            self.resolver.add_kmod(r["name"], r["addr"], r["size"] or 0)
        elif kind == "perfmap" and r["pid"] is not None and r["addr"] is not None:
            self.resolver.add_perfmap(r["pid"], r["addr"], r["size"] or 0, r["name"] or "")
            self._seen(r["pid"], self._stream_ns)

    def _seen(self, pid: int, t_ns: int) -> None:
        if self.forget_after_ns is not None and t_ns > self._last_seen.get(pid, -1):
            self._last_seen[pid] = t_ns

    def _add_sample(self, r: dict) -> None:
        s = SampleRow(r["window_start_ns"] or 0, r["window_end_ns"] or 0, r["pid"] or 0,
                      r["comm"] or "", r["count"] or 0, r["user_stack"] or [],
                      r["kernel_stack"] or [], r["user_stack_error"], r["kernel_stack_error"])
        self._pending.setdefault((s.window_start_ns, s.window_end_ns), []).append(s)

    # --- symbolization -------------------------------------------------------------------
    def _close(self, key: tuple[int, int]) -> list[Profile]:
        samples = self._pending.pop(key, [])
        snaps = {s.pid: self.index.snapshot_for(s.pid, key[1]) for s in samples}
        label_keys = self._label_keys(snaps)
        kept = [s for s in samples if label_keys[s.pid] is not None]
        for s in samples:
            if label_keys[s.pid] is None:
                self._drop(s)
        self.resolver.prepare_user(
            (snaps[s.pid], s.pid, a, i > 0) for s in kept for i, a in enumerate(s.user_stack)
        )
        profiles: dict[LabelKey, Profile] = {}
        for s in kept:
            lk = label_keys[s.pid] or ()
            profile = profiles.get(lk)
            if profile is None:
                profile = profiles[lk] = Profile(key[0], key[1], self.sample_rate, dict(lk))
            frames, unresolved = self._stack(s, snaps[s.pid])
            profile.add(frames, s.count)
            self.report.add(unresolved, s.count)
            self.total_samples += s.count
        self.windows_closed += 1
        if self.forget_after_ns is not None:
            for pid in snaps:
                self._seen(pid, key[1])
            self._stream_ns = max(self._stream_ns, key[1])
            if self._stream_ns >= self._next_sweep_ns:
                self._sweep()
        if not profiles:
            return [Profile(key[0], key[1], self.sample_rate)]
        return [profiles[k] for k in sorted(profiles)]

    def _sweep(self) -> None:
        assert self.forget_after_ns is not None
        self._next_sweep_ns = self._stream_ns + _SWEEP_EVERY_NS
        horizon = self._stream_ns - self.forget_after_ns
        for pid in [p for p, t in self._last_seen.items() if t < horizon]:
            del self._last_seen[pid]
            self.index.forget(pid)
            self.resolver.forget(pid)
        # windows still open (their `window` row has not come) may use older snapshots
        start = min([k[0] for k in self._pending] + [self._stream_ns])
        for pid in self._last_seen:
            dropped = self.index.prune_superseded(pid, start)
            if dropped:
                self.resolver.forget(pid, dropped)
        if len(self._roots) > _ROOTS_KEPT:
            self._roots.clear()

    def retained_pids(self) -> set[int]:
        """Pids something is kept for (tests check that a long stream keeps this bounded)."""
        return self.index.pids() | self.resolver.retained_pids() | set(self._last_seen)

    def _label_keys(self, snaps: dict[int, Snapshot | None]) -> dict[int, LabelKey | None]:
        """Labels of each pid of a window, asked once per distinct cgroup in the window (the
        labeler may list pods when it meets a new container, so not once per sample)."""
        if self.labeler is None:
            return dict.fromkeys(snaps, ())
        by_cgroup: dict[tuple[str | None, str | None], LabelKey | None] = {}
        out: dict[int, LabelKey | None] = {}
        for pid, snap in snaps.items():
            where = (snap.cgroup, snap.container_id) if snap is not None else (None, None)
            if where not in by_cgroup:
                labels = self.labeler(*where)
                by_cgroup[where] = None if labels is None else tuple(sorted(labels.items()))
            out[pid] = by_cgroup[where]
        return out

    def _drop(self, s: SampleRow) -> None:
        self.dropped_samples += s.count
        if s.comm in self.dropped_comms or len(self.dropped_comms) < _DROPPED_COMMS_KEPT:
            self.dropped_comms[s.comm] += s.count

    def _stack(self, s: SampleRow, snap) -> tuple[tuple[Frame, ...], set[Unresolved]]:
        root = self._roots.get(s.comm)
        if root is None:
            root = self._roots[s.comm] = Frame(s.comm or UNKNOWN, FrameKind.ROOT)
        frames: list[Frame] = [root]
        unresolved: set[Unresolved] = set()
        self._append(frames, unresolved, s.user_stack, s.user_stack_error, FrameKind.USER,
                     lambda a, ret: self.resolver.user(snap, s.pid, a, ret))
        self._append(frames, unresolved, s.kernel_stack, s.kernel_stack_error,
                     FrameKind.KERNEL, self.resolver.kernel)
        return tuple(frames), unresolved

    @staticmethod
    def _append(frames: list[Frame], unresolved: set[Unresolved], stack: Iterable[int],
                error: int | None, kind: FrameKind, resolve) -> None:
        if error in _LOST:
            reason = _LOST[error]
            frames.append(Frame(UNKNOWN, kind, reason=reason))
            unresolved.add(Unresolved("[lost stacks]", None, reason))
            return
        stack = list(stack)
        # Stacks are stored leaf first; output is root first.
        for i in range(len(stack) - 1, -1, -1):
            got, why = resolve(stack[i], i > 0)
            frames.extend(got)
            if why is not None:
                unresolved.add(why)
