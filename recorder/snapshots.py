"""Turns /proc snapshots into recording rows, once per process and again when mappings change."""

from __future__ import annotations

import bisect
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from discovery.cgroups import container_info
from recorder import procfs
from recorder.mmap_events import MmapTracker
from recorder.objects import ObjectFacts, ObjectRegistry
from recorder.perfmap import PerfMapReader
from recorder.procfs import ExecKey, Mapping, ProcessSnapshot
from recording.schema import Row

# Called with each new snapshot's pid, its mappings with their objects' facts (None:
# anonymous or unreadable), and whether it only adds mappings to the previous snapshot of the
# same process (no exec since), e.g. to give the BPF unwinder the process's tables.
SnapshotHook = Callable[[int, list[tuple[Mapping, ObjectFacts | None]], bool], None]


@functools.lru_cache(maxsize=1024)
def _cgroup_facts(cgroup_text: str | None) -> tuple[str | None, str | None]:
    """(cgroup path, container ID) from /proc/PID/cgroup contents. Parsed once per distinct
    text: a host's new processes share a few cgroups, and the parse (regular expressions per
    path component) was a tenth of the main thread's time at 28 snapshots a second."""
    if not cgroup_text:
        return None, None
    info = container_info(cgroup_text)
    return info.path, info.container_id


def _perms(prot: int) -> str:
    """/proc/PID/maps' permission column for a PROT_* mask (private: a shared executable
    mapping of a file is rare, and the symbolizer reads only the x)."""
    return "".join(c if prot & bit else "-" for bit, c in ((1, "r"), (2, "w"), (4, "x"))) + "p"


@dataclass
class _Known:
    seq: int
    key: ExecKey
    has_anon_exec: bool
    # The mmap tracker's lost-record count when this snapshot was taken: an extension by its
    # records is exact only if none was lost since.
    mmap_lost: int
    snapshot: ProcessSnapshot  # the latest, extended by mmap records once the process is gone
    starts: list[int] = field(default_factory=list)  # sorted mapping starts, with ends
    ends: list[int] = field(default_factory=list)

    def covers(self, addr: int) -> bool:
        i = bisect.bisect_right(self.starts, addr) - 1
        return i >= 0 and addr < self.ends[i]


class ProcessTracker:
    def __init__(self, objects: ObjectRegistry, vdso: ObjectFacts | None,
                 proc: str = "/proc", on_snapshot: SnapshotHook | None = None,
                 mmaps: MmapTracker | None = None) -> None:
        self.objects = objects
        self.on_snapshot = on_snapshot
        self.mmaps = mmaps
        self.vdso = vdso
        self.proc = proc
        self.known: dict[int, _Known] = {}
        self._next_seq: dict[int, int] = {}
        self._last_sampled: dict[int, float] = {}
        self.perfmaps = PerfMapReader(proc)

    def __len__(self) -> int:
        return len(self.known)

    def observe(self, pid: int, forked_from: int | None = None, *,
                mapped: bool = False) -> list[Row]:
        """Rows for a new process, or for one whose executable mappings changed.

        forked_from: the parent a new process forked from without exec (the BPF program
        knows it). If the child is gone before its /proc could be read, it still ran its
        parent's mappings: it gets its parent's current ones, recorded as inherited.
        mapped: the process only added executable mappings since its last snapshot (the
        BPF program's EV_MMAP, not an exec): the kernel's mmap records say which, so /proc
        is read only if they cannot (none yet, some lost, or one replaces a known mapping)."""
        prev = self.known.get(pid)
        if mapped and prev is not None:
            added = self._added_since(prev)
            if added:
                return self._accept(pid, replace(prev.snapshot, mappings=sorted(
                    prev.snapshot.mappings + added, key=lambda m: m.start)), prev, added=True)
        snap = procfs.snapshot(pid, self.proc)
        if not snap.reason and not snap.mappings:
            # exited and not yet reaped (a zombie has its status, not its mappings)
            snap.reason = "process exited before its mappings could be read"
        if not snap.reason:
            self.perfmaps.remember(pid)
        if snap.reason and prev is not None:
            # exited: the snapshot we have stays valid for its samples, with what the kernel
            # reported it mapped since (a dlopen or JIT code heap asked for this re-read)
            extended = self._extended_by_mmap_records(prev.snapshot)
            if extended is None:
                return []
            snap = extended
        if snap.reason and forked_from:
            parent = procfs.snapshot(forked_from, self.proc)
            if not parent.reason:
                parent.pid, parent.ppid = pid, forked_from
                parent.reason = (f"inherited from parent {forked_from} (fork without exec; "
                                 "the child exited before its own mappings were read)")
                snap = parent
        if snap.reason and self.mmaps is not None:
            snap = self._from_mmap_records(snap)
            if snap.ppid is None and forked_from:
                # its samples inside execve ran its parent's code (symbolizer/normalize.py)
                snap.ppid = forked_from
        return self._accept(pid, snap, prev)

    def _accept(self, pid: int, snap: ProcessSnapshot, prev: _Known | None,
                added: bool = False) -> list[Row]:
        """Rows for `snap` if its mappings differ from the previous snapshot's (added: it is
        that snapshot plus new mappings)."""
        key = snap.exec_key()
        if prev is not None and prev.key == key:
            return []
        seq = self._next_seq.get(pid, 0)
        self._next_seq[pid] = seq + 1
        self._last_sampled[pid] = time.time()  # it is observed because it was just sampled
        has_anon = any(not m.path for m in snap.mappings)
        spans = sorted((m.start, m.end) for m in snap.mappings)
        lost = self.mmaps.lost if self.mmaps is not None else 0
        self.known[pid] = _Known(seq, key, has_anon, lost, snap, [s for s, _ in spans],
                                 [e for _, e in spans])
        rows = self._rows(snap, seq)
        if self.on_snapshot is not None:
            ids = [r.get("object_id") for r in rows if r["record"] == "mapping"]
            facts = self.objects.facts
            self.on_snapshot(pid, [(m, facts.get(i) if i else None)
                                   for m, i in zip(snap.mappings, ids, strict=True)], added)
        if has_anon:
            rows.extend(self.perfmap_rows(pid))
        return rows

    def _added_since(self, prev: _Known) -> list[Mapping]:
        """The executable mappings the kernel reported for a live process that its last
        snapshot lacks; empty if /proc must be read instead: no records, records lost since
        (PERF_RECORD_LOST), or a new one overlapping a known mapping (munmap and a new mmap
        at the same addresses: the old one is gone, which only /proc shows)."""
        if self.mmaps is None or prev.snapshot.reason or self.mmaps.lost != prev.mmap_lost:
            return []
        got = self.mmaps.mappings(prev.snapshot.pid)
        if got is None:
            return []
        known = {(m.start, m.end, m.file_offset, m.inode) for m in prev.snapshot.mappings}
        new = sorted({(r.start, r.end, r.file_offset, r.inode, r.dev, r.path, r.prot)
                      for r in got.mappings
                      if (r.start, r.end, r.file_offset, r.inode) not in known})
        spans = sorted([(m.start, m.end) for m in prev.snapshot.mappings]
                       + [(n[0], n[1]) for n in new])
        if any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1)):
            return []  # overlaps: mapped over something, or the kernel merged or split VMAs
        return [Mapping(start, end, _perms(prot), offset, dev, inode, path)
                for start, end, offset, inode, dev, path, prot in new]

    def _from_mmap_records(self, snap: ProcessSnapshot) -> ProcessSnapshot:
        """The snapshot of an exited process from the kernel's mmap records, if it has some."""
        assert self.mmaps is not None
        got = self.mmaps.mappings(snap.pid)
        if got is None or not got.mappings:
            return snap
        perms = "r-xp"
        return ProcessSnapshot(
            pid=snap.pid, comm=got.comm, exe=got.mappings[0].path,
            mappings=[Mapping(r.start, r.end, perms, r.file_offset, r.dev, r.inode, r.path)
                      for r in got.mappings],
            reason="from the kernel's mmap records (the process exited before /proc was read)")

    def _extended_by_mmap_records(self, prev: ProcessSnapshot) -> ProcessSnapshot | None:
        """The last snapshot of a process now gone, plus the executable mappings the kernel
        reported after it that it does not cover; None if there are none."""
        got = self.mmaps.mappings(prev.pid) if self.mmaps is not None else None
        if got is None:
            return None
        spans = sorted((m.start, m.end) for m in prev.mappings)
        starts = [a for a, _ in spans]

        def covered(start: int) -> bool:
            i = bisect.bisect_right(starts, start) - 1
            return i >= 0 and start < spans[i][1]

        new = [Mapping(r.start, r.end, "r-xp", r.file_offset, r.dev, r.inode, r.path)
               for r in got.mappings if not covered(r.start)]
        if not new:
            return None
        return replace(
            prev, mappings=sorted(prev.mappings + new, key=lambda m: m.start),
            reason="the last snapshot from /proc and the kernel's mmap records after it (the "
                   "process exited before /proc was read again)")

    def _rows(self, snap: ProcessSnapshot, seq: int) -> list[Row]:
        cgroup, container_id = _cgroup_facts(snap.cgroup)
        rows: list[Row] = [{
            "record": "process", "time_ns": time.time_ns(), "pid": snap.pid, "ppid": snap.ppid,
            "comm": snap.comm, "exe": snap.exe, "cgroup": cgroup, "container_id": container_id,
            "maps_seq": seq, "reason": snap.reason,
        }]
        objects: list[Row] = []
        for m in snap.mappings:
            object_id = None
            if m.path == "[vdso]" and self.vdso is not None:
                object_id = self.vdso.object_id
                if self.objects.add_memory_object(self.vdso):
                    objects.append(self.vdso.row())
            elif m.is_file:
                object_id, facts = self.objects.object_for(snap.pid, m)
                if facts is not None:
                    objects.append(facts.row())
            rows.append({
                "record": "mapping", "pid": snap.pid, "maps_seq": seq, "start": m.start,
                "end": m.end, "file_offset": m.file_offset, "path": m.path, "inode": m.inode,
                "dev": m.dev, "perms": m.perms, "object_id": object_id,
            })
        return objects + rows

    def perfmap_rows(self, pid: int) -> list[Row]:
        """Entries appended to the process's /tmp/perf-PID.map since it was last read
        (recorder/perfmap.py: the file belongs to the process's user and is not trusted)."""
        return self.perfmaps.read_new(pid)

    def perfmap_rows_for(self, pids: Iterable[int]) -> list[Row]:
        """New perf-map lines of those of `pids` that have anonymous executable memory."""
        rows: list[Row] = []
        for pid in pids:
            k = self.known.get(pid)
            if k is not None and k.has_anon_exec:
                rows.extend(self.perfmap_rows(pid))
        return rows

    def covers(self, pid: int, addr: int) -> bool:
        """Whether the pid's latest snapshot has a mapping at addr."""
        k = self.known.get(pid)
        return k is not None and k.covers(addr)

    def sampled(self, pid: int, now: float) -> None:
        self._last_sampled[pid] = now

    def forget_idle(self, now: float, idle_seconds: float) -> list[int]:
        """Forget processes not sampled for `idle_seconds` (exited ones included), so memory
        stays flat on a long run. If one is sampled again, `observe` writes a full new snapshot
        with a higher maps_seq; docs/recording-format.md lets stream readers rely on that."""
        idle = [pid for pid in self.known if now - self._last_sampled.get(pid, 0.0) > idle_seconds]
        for pid in idle:
            del self.known[pid]
            self._last_sampled.pop(pid, None)
            self.perfmaps.forget(pid)
        return idle

    def final_perfmap_rows(self) -> list[Row]:
        return self.perfmap_rows_for(list(self.known))
