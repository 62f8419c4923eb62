"""Recording batches in, the Profiles of each closed drain window out (one per label set).

Rows other than samples (processes, mappings, objects, kernel symbols, perf maps, meta) feed
the mapping index and the resolver. Samples wait in their drain window until its `window` row
closes it (or the input ends), then the window's unique addresses are resolved together and
its stacks built: `comm; user frames root..leaf; kernel frames root..leaf`, as Pyroscope's
agent roots each stack at the process name.

Each window is split by the labels a `Labeler` gives each process (the service discovery of
discovery/, from the cgroup and container ID its `process` row recorded), so that
different services end up in different uploads, as Pyroscope's agent sends them. A labeler
may answer None: the process is dropped (--only-services) and its samples counted.
"""

from __future__ import annotations

import errno
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from profiles.model import Frame, FrameKind, Profile
from recording.buildid import checked_build_id
from recording.columns import RowBatch
from recording.pyframes import native_entries
from symbolizer.normalize import (
    AbsAddr,
    Mapping,
    MappingIndex,
    ObjectInfo,
    Snapshot,
    loads_from_phdrs,
)
from symbolizer.options import SymbolizeOptions
from symbolizer.python import PythonCodes
from symbolizer.report import Unresolved, UnresolvedReport
from symbolizer.resolve import UNKNOWN, LinesFn, Resolved, Resolver

DEFAULT_SAMPLE_RATE = 100
MAX_SAMPLE_RATE = 1_000_000  # 10x the kernel's default perf_event_max_sample_rate
# (cgroup, container_id) of a process -> its labels, or None to drop it
Labeler = Callable[[str | None, str | None], dict[str, str] | None]
LabelKey = tuple[tuple[str, str], ...]
_DROPPED_COMMS_KEPT = 1000  # names kept for the --only-services report, so it stays bounded
_LOST = {
    -errno.EEXIST: "stack lost: stack map hash collision (EEXIST)",
    -errno.ENOMEM: "stack lost: stack map full (ENOMEM)",
}



@dataclass(frozen=True, slots=True)
class SampleRow:
    """One recorded sample row: a unique (pid, stacks) of a window, with its count."""

    window_start_ns: int
    window_end_ns: int
    pid: int
    comm: str
    count: int
    user_stack: list[int]
    kernel_stack: list[int]
    user_stack_error: int | None
    kernel_stack_error: int | None
    user_unwinder: str | None = None


class _Batch:
    """Row positions per record type, and columns as Python lists, each made once."""

    def __init__(self, batch: RowBatch) -> None:
        self.batch = batch
        # cells as pyarrow's to_pylist gives them (untyped), of the recording's column types
        self._cols: dict[str, list[Any]] = {}
        self._rows: dict[str, list[int]] = {}
        for i, kind in enumerate(batch.column("record").to_pylist()):
            got = self._rows.get(kind)
            if got is None:
                self._rows[kind] = [i]
            else:
                got.append(i)

    def rows(self, kind: str) -> list[int]:
        return self._rows.get(kind, [])

    def records(self, kind: str, *columns: str) -> Iterator[tuple[Any, ...]]:
        """The given columns of the rows of one record type, row by row."""
        rows = self.rows(kind)
        return zip(*(self.take(c, rows) for c in columns), strict=True) if rows else iter(())

    def take(self, column: str, rows: list[int]) -> list[Any]:
        if not rows:
            return []
        if len(rows) == self.batch.num_rows:  # a batch of one record type: the whole column
            return self._column(column)
        col = self._column(column)
        return [col[i] for i in rows]

    def _column(self, name: str) -> list[Any]:
        col = self._cols.get(name)
        if col is None:
            if name in self.batch.column_names:
                col = self.batch.column(name).to_pylist()
            else:  # a column newer than the recording's schema version
                col = [None] * self.batch.num_rows
            self._cols[name] = col
        return col


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
        self.python = PythonCodes()
        self.meta: dict[str, str] = {}
        self.total_samples = 0
        self.windows_closed = 0
        self._pending: dict[tuple[int, int], list[SampleRow]] = {}
        self._roots: dict[str, Frame] = {}

    @property
    def sample_rate(self) -> int:
        # a recorded string: "inf", "nan", "-5" or "abc" fall back to the default rate
        try:
            rate = float(self.meta.get("sample_rate_hz", DEFAULT_SAMPLE_RATE))
        except ValueError:
            return DEFAULT_SAMPLE_RATE
        return int(rate) if 1 <= rate <= MAX_SAMPLE_RATE else DEFAULT_SAMPLE_RATE

    # --- input ---------------------------------------------------------------------------
    # Rows are read column by column (to_pylist of the few columns a record type uses), not
    # as one dict per row of all ~40 columns: that was most of the cost of reading a batch.
    # Within a batch, metadata rows are taken first, then samples, then `window` rows in
    # order: a snapshot is chosen by its time, not its position, and samples only wait in
    # their window until its `window` row, which the recorder writes after them.
    def feed_metadata(self, batch: RowBatch) -> None:
        self._feed_meta(_Batch(batch))

    def feed(self, batch: RowBatch, *, metadata: bool = True) -> list[list[Profile]]:
        """Take one batch; return the drain windows it closed, in order, each as its Profiles
        (one per label set, sorted by labels; one unlabelled empty Profile when the window
        had no samples, so that empty windows still reach the output)."""
        b = _Batch(batch)
        if metadata:
            self._feed_meta(b)
        self._feed_samples(b)
        return [self._close((ws or 0, we or 0))
                for ws, we in b.records("window", "window_start_ns", "window_end_ns")]

    def finish(self) -> list[list[Profile]]:
        """Windows whose `window` row never came (a recorder that was killed)."""
        return [self._close(key) for key in sorted(self._pending)]

    def _feed_meta(self, b: _Batch) -> None:
        for k, v in b.records("meta", "key", "value"):
            if k is not None:
                self.meta[k] = v or ""
        for oid, path, bid, et, phdrs, data, reason in b.records(
                "object", "object_id", "path", "build_id", "elf_type", "phdrs", "data",
                "reason"):
            if oid:
                # A recording may be crafted: a build ID that is not hex would become a path
                # in the symbol cache and debug trees. Refused here, it is "no build ID".
                bid, bid_problem = checked_build_id(bid)
                self.index.add_object(ObjectInfo(sys.intern(oid), path or "", bid, et,
                                                 loads_from_phdrs(phdrs), data, reason,
                                                 bid_problem))
        for pid, seq, t, cg, cid, ppid in b.records(
                "process", "pid", "maps_seq", "time_ns", "cgroup", "container_id", "ppid"):
            if pid is not None:
                # interned: thousands of processes share a few cgroups
                self.index.add_process(pid, seq or 0, t or 0, cg and sys.intern(cg),
                                       cid and sys.intern(cid), ppid or None)
                self._seen(pid, max(t or 0, self._stream_ns))
        for pid, seq, start, end, off, path, oid in b.records(
                "mapping", "pid", "maps_seq", "start", "end", "file_offset", "path",
                "object_id"):
            if pid is not None and start is not None:
                # interned: every process maps libc, and a stream keeps 120 s of them
                self.index.add_mapping(pid, seq or 0, Mapping(
                    start, end or start, off or 0, sys.intern(path or ""),
                    oid and sys.intern(oid)))
        for addr, size, name in b.records("ksym", "addr", "size", "name"):
            if addr is not None and name:
                self.resolver.add_ksym(addr, size or 0, name)
        for addr, size, name in b.records("kmod", "addr", "size", "name"):
            if addr is not None and name:
                self.resolver.add_kmod(name, addr, size or 0)
        for pid, addr, size, name in b.records("perfmap", "pid", "addr", "size", "name"):
            if pid is not None and addr is not None:
                self.resolver.add_perfmap(pid, addr, size or 0, name or "")
                self._seen(pid, self._stream_ns)

        for pid, addr, csum, name, path, first, table, version, reason in b.records(
                "pycode", "pid", "addr", "py_checksum", "name", "path", "py_firstlineno",
                "py_linetable", "py_version", "reason"):
            if pid is not None and addr is not None and csum is not None:
                self.python.add(pid, addr, csum, name, path, first, table, version, reason)

    def _seen(self, pid: int, t_ns: int) -> None:
        if self.forget_after_ns is not None and t_ns > self._last_seen.get(pid, -1):
            self._last_seen[pid] = t_ns

    def _feed_samples(self, b: _Batch) -> None:
        pending = self._pending
        for ws, we, pid, comm, n, ustack, kstack, uerr, kerr, unw in b.records(
                "sample", "window_start_ns", "window_end_ns", "pid", "comm", "count",
                "user_stack", "kernel_stack", "user_stack_error", "kernel_stack_error",
                "user_unwinder"):
            key = (ws or 0, we or 0)
            s = SampleRow(key[0], key[1], pid or 0, comm or "", n or 0, ustack or [],
                          kstack or [], uerr, kerr, unw)
            got = pending.get(key)
            if got is None:
                pending[key] = [s]
            else:
                got.append(s)

    # --- symbolization -------------------------------------------------------------------
    def _close(self, key: tuple[int, int]) -> list[Profile]:
        samples = self._pending.pop(key, [])
        snaps = {s.pid: self.index.snapshot_for(s.pid, key[1]) for s in samples}
        label_keys = self._label_keys(snaps)
        kept = [s for s in samples if label_keys[s.pid] is not None]
        for s in samples:
            if label_keys[s.pid] is None:
                self._drop(s)
        user_snaps = [self.index.for_user_stack(snaps[s.pid], _native_leaf(s.user_stack),
                                                key[1]) for s in kept]
        self.resolver.prepare_user_stacks(
            (snap, s.pid, s.user_stack, s.user_unwinder)
            for s, snap in zip(kept, user_snaps, strict=True))
        profiles: dict[LabelKey, Profile] = {}
        for s, snap in zip(kept, user_snaps, strict=True):
            lk = label_keys[s.pid] or ()
            profile = profiles.get(lk)
            if profile is None:
                profile = profiles[lk] = Profile(key[0], key[1], self.sample_rate, dict(lk))
            frames, unresolved = self._stack(s, snap)
            profile.add(frames, s.count, s.pid if self.options.per_process else None, s.comm)
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
            self.python.forget(pid)
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
        return (self.index.pids() | self.resolver.retained_pids() | self.python.pids()
                | set(self._last_seen))

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

    def _stack(self, s: SampleRow, snap: Snapshot | None
               ) -> tuple[tuple[Frame, ...], set[Unresolved]]:
        root = self._roots.get(s.comm)
        if root is None:
            root = self._roots[s.comm] = Frame(s.comm or UNKNOWN, FrameKind.ROOT)
        frames: list[Frame] = [root]
        unresolved: set[Unresolved] = set()
        lost = _LOST.get(s.user_stack_error or 0)
        if lost is not None:
            _lost(frames, unresolved, lost, FrameKind.USER)
        else:
            python = self.python
            pid = s.pid
            _add(frames, unresolved, self.resolver.user_stack(
                snap, pid, s.user_stack, s.user_unwinder,
                lambda a, b: python.frame(pid, a, b)))
        lost = _LOST.get(s.kernel_stack_error or 0)
        if lost is not None:
            _lost(frames, unresolved, lost, FrameKind.KERNEL)
        elif s.kernel_stack:
            _add(frames, unresolved, self.resolver.kernel_stack(s.kernel_stack))
        return tuple(frames), unresolved


def _lost(frames: list[Frame], unresolved: set[Unresolved], reason: str, kind: FrameKind
          ) -> None:
    frames.append(Frame(UNKNOWN, kind, reason=reason))
    unresolved.add(Unresolved("[lost stacks]", None, reason))


def _add(frames: list[Frame], unresolved: set[Unresolved], resolved: list[Resolved]) -> None:
    """Append a stack's frames: stored leaf first, written root first. (Python frame pairs in
    user stacks: recording/pyframes.py, resolved by Resolver.user_stack.)"""
    frames += [f for got, _why in reversed(resolved) for f in got]
    for _got, why in resolved:
        if why is not None:
            unresolved.add(why)


def _native_leaf(stack: list[int] | None) -> AbsAddr | None:
    """The sampled instruction: the first native entry (Python frame pairs come first when the
    interpreter was running Python code, recording/pyframes.py)."""
    for addr, _is_return in native_entries(stack or ()):
        return AbsAddr(addr)
    return None
