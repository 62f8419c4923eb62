"""Normalization: (pid, absolute address, window) -> (object, ELF virtual address).

Three address kinds are kept apart by type, as blazesym and OTel's pfelf do:
- AbsAddr: an address in the process, as the stack walk saw it;
- FileOffset: a byte offset in the mapped file;
- ElfAddr: a virtual address as the ELF file's symbols and DWARF use it.
Only `file_offset_of` and `elf_addr_of` convert between them.

The snapshots, mappings and objects come from the recording, so this needs nothing from the
recording host. docs/recording-format.md: a sample of window [s, e) of a pid uses that pid's
latest snapshot whose time_ns <= e, else its first.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NewType

from recording.elf import LoadSegment, vaddr_of_offset

AbsAddr = NewType("AbsAddr", int)
FileOffset = NewType("FileOffset", int)
ElfAddr = NewType("ElfAddr", int)

VDSO_PATH = "[vdso]"
DELETED_SUFFIX = " (deleted)"


@dataclass(frozen=True)
class ObjectInfo:
    """An `object` row: one ELF object as it was on the recording host."""

    object_id: str
    path: str
    build_id: str | None
    elf_type: str | None
    loads: tuple[LoadSegment, ...]
    data: bytes | None = None  # in-memory objects only (the vDSO image)
    reason: str | None = None
    build_id_problem: str | None = None  # why the recorded build ID was refused (then None)


@dataclass(frozen=True, slots=True)
class Mapping:
    """A `mapping` row: one executable mapping of a process snapshot."""

    start: int
    end: int
    file_offset: int
    path: str
    object_id: str | None

    @property
    def anonymous(self) -> bool:
        return self.path == "" or self.path.startswith("[anon")


@dataclass(slots=True)
class Snapshot:
    """One recorded snapshot (pid, maps_seq) of a process: its executable mappings."""

    pid: int
    maps_seq: int
    time_ns: int
    mappings: list[Mapping] = field(default_factory=list)
    cgroup: str | None = None  # where the process ran: its service's labels come from these
    container_id: str | None = None
    ppid: int | None = None
    _starts: list[int] | None = None

    def find(self, addr: AbsAddr) -> Mapping | None:
        if self._starts is None:
            self.mappings.sort(key=lambda m: m.start)
            self._starts = [m.start for m in self.mappings]
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.mappings[i].end:
            return self.mappings[i]
        return None


@dataclass(frozen=True)
class Normalized:
    """Where an absolute address lies. `mapping` None: outside every recorded mapping."""

    addr: AbsAddr
    mapping: Mapping | None
    obj: ObjectInfo | None
    file_offset: FileOffset | None
    elf_addr: ElfAddr | None
    reason: str | None = None  # why elf_addr could not be computed


def file_offset_of(mapping: Mapping, addr: AbsAddr) -> FileOffset:
    # mmap maps file bytes [file_offset, file_offset + len) at [start, end), page-aligned,
    # so the distance from the mapping start is the distance in the file.
    return FileOffset(addr - mapping.start + mapping.file_offset)


def elf_addr_of(loads: Iterable[LoadSegment], offset: FileOffset) -> ElfAddr | None:
    """The ELF virtual address of a file offset (recording.elf.vaddr_of_offset)."""
    vaddr = vaddr_of_offset(loads, offset)
    return None if vaddr is None else ElfAddr(vaddr)


class MappingIndex:
    """The recorded processes, mappings and objects, by pid and snapshot."""

    def __init__(self) -> None:
        self._snapshots: dict[int, dict[int, Snapshot]] = {}
        self._ordered: dict[int, list[Snapshot]] = {}
        self.objects: dict[str, ObjectInfo] = {}

    def _snapshot(self, pid: int, maps_seq: int) -> Snapshot:
        per_pid = self._snapshots.setdefault(pid, {})
        snap = per_pid.get(maps_seq)
        if snap is None:
            snap = per_pid[maps_seq] = Snapshot(pid, maps_seq, time_ns=0)
            self._ordered.pop(pid, None)
        return snap

    def add_process(self, pid: int, maps_seq: int, time_ns: int, cgroup: str | None = None,
                    container_id: str | None = None, ppid: int | None = None) -> None:
        snap = self._snapshot(pid, maps_seq)
        snap.time_ns, snap.cgroup, snap.container_id = time_ns, cgroup, container_id
        snap.ppid = ppid
        self._ordered.pop(pid, None)

    def add_mapping(self, pid: int, maps_seq: int, mapping: Mapping) -> None:
        snap = self._snapshot(pid, maps_seq)
        snap.mappings.append(mapping)
        snap._starts = None

    def add_object(self, obj: ObjectInfo) -> None:
        self.objects.setdefault(obj.object_id, obj)

    def pids(self) -> set[int]:
        return set(self._snapshots)

    def snapshot_count(self, pid: int) -> int:
        return len(self._snapshots.get(pid, {}))

    def forget(self, pid: int) -> None:
        self._snapshots.pop(pid, None)
        self._ordered.pop(pid, None)

    def prune_superseded(self, pid: int, window_start_ns: int) -> list[int]:
        """Drop snapshots that no window from window_start_ns on can use: those older than
        the latest one taken by then (windows only move forward in a stream). Returns the
        maps_seq of the dropped snapshots."""
        per_pid = self._snapshots.get(pid)
        if not per_pid or len(per_pid) < 2:
            return []
        ordered = sorted(per_pid.values(), key=lambda s: s.maps_seq)
        current = [i for i, s in enumerate(ordered) if s.time_ns <= window_start_ns]
        if not current or current[-1] == 0:
            return []
        dropped = [s.maps_seq for s in ordered[: current[-1]]]
        for seq in dropped:
            del per_pid[seq]
        self._ordered.pop(pid, None)
        return dropped

    def snapshot_for(self, pid: int, window_end_ns: int) -> Snapshot | None:
        ordered = self._ordered.get(pid)
        if ordered is None:
            per_pid = self._snapshots.get(pid)
            if not per_pid:
                return None
            ordered = self._ordered[pid] = sorted(per_pid.values(), key=lambda s: s.maps_seq)
        chosen = ordered[0]
        for snap in ordered:
            if snap.time_ns <= window_end_ns:
                chosen = snap
        return chosen

    def for_user_stack(self, snap: Snapshot | None, leaf: AbsAddr | None,
                       window_end_ns: int) -> Snapshot | None:
        """The snapshot a sample's user stack is read with. A child sampled inside execve,
        after the kernel gave it its new name but before the new program's mappings, still
        runs its parent's code (fork copied the parent's mappings; fs/exec.c replaces them
        only at the point of no return): a leaf that no mapping of the child's covers and one
        of its parent's does is the parent's, as perf has it (its thread inherits the
        parent's maps until the exec's MMAP2 records)."""
        if snap is None or leaf is None or snap.ppid is None or snap.find(leaf) is not None:
            return snap
        parent = self.snapshot_for(snap.ppid, window_end_ns)
        return parent if parent is not None and parent.find(leaf) is not None else snap

    def normalize(self, snap: Snapshot | None, addr: AbsAddr) -> Normalized:
        mapping = snap.find(addr) if snap is not None else None
        if mapping is None:
            reason = "no mappings recorded for the process" if snap is None else (
                "address outside every recorded mapping")
            return Normalized(addr, None, None, None, None, reason)
        obj = self.objects.get(mapping.object_id) if mapping.object_id else None
        offset = file_offset_of(mapping, addr)
        if obj is None:
            return Normalized(addr, mapping, None, offset, None, "object not recorded")
        if not obj.loads:
            return Normalized(addr, mapping, obj, offset, None,
                              obj.reason or "no program headers recorded for the object")
        elf_addr = elf_addr_of(obj.loads, offset)
        if elf_addr is None:
            return Normalized(addr, mapping, obj, offset, None,
                              "file offset outside every PT_LOAD segment")
        return Normalized(addr, mapping, obj, offset, elf_addr)


def loads_from_phdrs(phdrs: Iterable[dict[str, Any] | None] | None) -> tuple[LoadSegment, ...]:
    """The recorded PT_LOAD headers; a header with a null field (a crafted or damaged
    recording: the recorder writes them all) is left out, never an exception. `phdrs`: a
    cell of the column as pyarrow's to_pylist gives it, unchecked."""
    if not phdrs:
        return ()
    out = []
    for p in phdrs:
        if not p or any(p.get(k) is None for k in ("offset", "vaddr", "filesz", "memsz")):
            continue
        out.append(LoadSegment(int(p["offset"]), int(p["vaddr"]), int(p["filesz"]),
                               int(p["memsz"]), int(p.get("flags") or 0)))
    return tuple(out)


def strip_deleted(path: str) -> str:
    return path[: -len(DELETED_SUFFIX)] if path.endswith(DELETED_SUFFIX) else path
