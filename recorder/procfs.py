"""Process facts from /proc, read when a process is first sampled and after its mappings change.

Everything here tolerates the process exiting mid-read: what could be read is returned with a
reason, never an exception.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from recorder.procmap_query import Unsupported, query_exec_vmas


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    file_offset: int
    dev: str
    inode: int
    path: str
    # from a kernel mmap record (recorder/mmap_events.py) that named the object by build ID
    # instead of device and inode
    build_id: str | None = None

    @property
    def map_files_name(self) -> str:
        # /proc/PID/map_files/ names entries "start-end" in lowercase hex without 0x
        # (fs/proc/base.c, proc_map_files_readdir).
        return f"{self.start:x}-{self.end:x}"

    @property
    def is_file(self) -> bool:
        return (self.inode != 0 or self.build_id is not None) and self.path.startswith("/")


# ProcessSnapshot.exec_key: (start, end, file_offset, inode, path) per mapping
ExecKey = tuple[tuple[int, int, int, int, str], ...]


@dataclass
class ProcessSnapshot:
    pid: int
    ppid: int | None = None
    comm: str | None = None
    exe: str | None = None
    cgroup: str | None = None
    mappings: list[Mapping] = field(default_factory=list)
    reason: str | None = None

    def exec_key(self) -> ExecKey:
        """What decides whether mappings changed since the previous snapshot."""
        return tuple((m.start, m.end, m.file_offset, m.inode, m.path) for m in self.mappings)


def parse_maps(text: str) -> list[Mapping]:
    """Executable mappings of /proc/PID/maps (format: fs/proc/task_mmu.c, show_map_vma)."""
    out: list[Mapping] = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or "x" not in parts[1]:
            continue
        try:
            start_s, end_s = parts[0].split("-")
            m = Mapping(
                start=int(start_s, 16),
                end=int(end_s, 16),
                perms=parts[1],
                file_offset=int(parts[2], 16),
                dev=parts[3],
                inode=int(parts[4]),
                path=parts[5].strip() if len(parts) > 5 else "",
            )
        except ValueError:
            continue
        out.append(m)
    return out


def read_exec_mappings(maps_path: str) -> list[Mapping]:
    """Executable mappings: by PROCMAP_QUERY where the kernel has it, else from the text."""
    try:
        return [Mapping(*vma) for vma in query_exec_vmas(maps_path)]
    except Unsupported:
        return parse_maps(_read(maps_path))


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def parse_stat_ppid(stat: str) -> int | None:
    # comm may contain spaces and parentheses: the fields after it start at the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    return int(rest[1]) if len(rest) > 1 else None


def snapshot(pid: int, proc: str = "/proc") -> ProcessSnapshot:
    snap = ProcessSnapshot(pid=pid)
    base = f"{proc}/{pid}"
    try:
        snap.comm = _read(f"{base}/comm").rstrip("\n")
        snap.ppid = parse_stat_ppid(_read(f"{base}/stat"))
        try:
            snap.exe = os.readlink(f"{base}/exe")
        except OSError:
            snap.exe = None  # kernel threads have no exe
        try:
            snap.cgroup = _read(f"{base}/cgroup")
        except OSError:
            snap.cgroup = None
        snap.mappings = read_exec_mappings(f"{base}/maps")
    except (FileNotFoundError, ProcessLookupError):
        snap.reason = "process exited before its mappings could be read"
    except PermissionError:
        snap.reason = "permission denied reading /proc (run as root)"
    except OSError as exc:
        snap.reason = f"reading {base} failed: {exc.strerror}"
    return snap


def all_pids(proc: str = "/proc") -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def descendants(roots: set[int], proc: str = "/proc") -> set[int]:
    """Processes whose parent chain reaches one of `roots` (the roots excluded)."""
    parent: dict[int, int] = {}
    for name in os.listdir(proc):
        if name.isdigit():
            try:
                ppid = parse_stat_ppid(_read(f"{proc}/{name}/stat"))
            except OSError:
                continue
            if ppid is not None:
                parent[int(name)] = ppid
    found: set[int] = set()
    for pid in parent:
        chain: list[int] = []
        p = pid
        while p in parent and p not in roots and p not in found and len(chain) < 4096:
            chain.append(p)
            p = parent[p]
        if p in roots or p in found:
            found.update(chain)
    return found - roots


def is_running(pid: int, proc: str = "/proc") -> bool:
    """True while the process runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = _read(f"{proc}/{pid}/stat")
    except OSError:
        return False
    state = stat[stat.rfind(")") + 2 :][:1]
    return state not in ("Z", "X", "")


def process_exists(pid: int, proc: str = "/proc") -> bool:
    return os.path.isdir(f"{proc}/{pid}")
