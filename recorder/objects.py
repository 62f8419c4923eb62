"""ELF objects seen in executable mappings: build ID and PT_LOAD headers, read once each.

Objects are read through /proc/PID/map_files/START-END, which opens the very file that is
mapped even when it was deleted or replaced on disk, and resolves paths inside the process's
mount namespace (containers). /proc/PID/root/PATH is the fallback where map_files is refused.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from recorder.procfs import Mapping
from recorder.rootfs import open_in_root
from recording.elf import ElfError, ElfInfo, read_elf_info
from recording.schema import Phdr, Row

DELETED_SUFFIX = " (deleted)"


@dataclass(frozen=True)
class ObjectFacts:
    object_id: str
    path: str
    build_id: str | None
    elf_type: str | None
    phdrs: list[Phdr]
    inode: int
    dev: str
    reason: str | None = None
    data: bytes | None = None

    def row(self) -> Row:
        return {
            "record": "object",
            "object_id": self.object_id,
            "path": self.path,
            "build_id": self.build_id,
            "elf_type": self.elf_type,
            "phdrs": self.phdrs,
            "inode": self.inode,
            "dev": self.dev,
            "reason": self.reason,
            "data": self.data,
        }


def fallback_id(path: str, dev: str, inode: int) -> str:
    return f"{path}@{dev}:{inode}"


class _ExtraFacts(TypedDict, total=False):
    reason: str | None
    data: bytes | None


def facts_from_info(info: ElfInfo, path: str, dev: str, inode: int,
                    **extra: Unpack[_ExtraFacts]) -> ObjectFacts:
    reason = None if info.build_id else "no GNU build ID note"
    return ObjectFacts(  # type: ignore[misc]  # mypy misses that "reason" is popped from extra
        object_id=info.build_id or fallback_id(path, dev, inode),
        path=path,
        build_id=info.build_id,
        elf_type=info.elf_type,
        phdrs=[
            {"offset": s.offset, "vaddr": s.vaddr, "filesz": s.filesz, "memsz": s.memsz,
             "flags": s.flags}
            for s in info.loads
        ],
        inode=inode,
        dev=dev,
        reason=extra.pop("reason", None) or reason,
        **extra,
    )


def _open_candidates(pid: int, m: Mapping, proc: str) -> list[Callable[[], int]]:
    """map_files (a magic link to the mapped file itself, so it must be followed), then the
    path inside the process's root, which its user may have replaced by a FIFO or a symlink
    since (recorder/rootfs.py). Neither may block: O_NONBLOCK, and a regular file is required."""
    path = m.path[: -len(DELETED_SUFFIX)] if m.path.endswith(DELETED_SUFFIX) else m.path
    map_file = f"{proc}/{pid}/map_files/{m.map_files_name}"
    return [lambda: os.open(map_file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC),
            lambda: open_in_root(pid, path, proc)]


# Objects the registry remembers at most: a build host runs a new test binary every few
# seconds, each its own object, for days. The longest unseen is forgotten first; seen again,
# it is read again and its object row written again (readers keep the first row of an
# object_id: symbolizer/normalize.py add_object). 8,192 objects of ~1 KiB of facts each.
MAX_KNOWN_OBJECTS = 8192


class ObjectRegistry:
    """Reads each (dev, inode, path) once; remembers the object id for later mappings."""

    def __init__(self, proc: str = "/proc", max_known: int = MAX_KNOWN_OBJECTS) -> None:
        self.proc = proc
        self.max_known = max_known
        self._ids: OrderedDict[tuple[str, int, str], str] = OrderedDict()
        # object_id -> facts (the unwinder's biases); an object written to the recording
        self.facts: OrderedDict[str, ObjectFacts] = OrderedDict()
        self.written = 0  # object rows written

    def __len__(self) -> int:
        return self.written

    def object_for(self, pid: int, m: Mapping) -> tuple[str, ObjectFacts | None]:
        """(object_id, facts to write if this object is new to the recording)."""
        key = (m.dev, m.inode, m.path)
        known = self._ids.get(key)
        if known is not None:
            self._ids.move_to_end(key)
        elif m.build_id is not None and m.build_id in self.facts:
            known = m.build_id  # read before under its device and inode
        if known is not None and known in self.facts:
            self.facts.move_to_end(known)
            return known, None
        facts = self._read(pid, m)
        if facts.build_id is None and facts.reason and m.inode and m.path.startswith("/"):
            # The process is gone, its mapping known from a kernel mmap record: the file at that
            # path in our own root if it is the very file the kernel reported (its device and
            # inode), so a path that means another file here is never used. In another mount
            # namespace (a container's) it is not: the object stays without a build ID.
            facts = self._read_same_file(m) or facts
        self._remember(self._ids, key, facts.object_id)
        if facts.object_id in self.facts:
            self.facts.move_to_end(facts.object_id)
            return facts.object_id, None
        self._remember(self.facts, facts.object_id, facts)
        self.written += 1
        return facts.object_id, facts

    def add_memory_object(self, facts: ObjectFacts) -> bool:
        if facts.object_id in self.facts:
            self.facts.move_to_end(facts.object_id)
            return False
        self._remember(self.facts, facts.object_id, facts)
        self.written += 1
        return True

    def _remember(self, table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value
        while len(table) > self.max_known:
            table.popitem(last=False)

    def _read_same_file(self, m: Mapping) -> ObjectFacts | None:
        try:
            fd = os.open(m.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            with open(fd, "rb") as f:
                st = os.fstat(f.fileno())
                dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
                if not stat.S_ISREG(st.st_mode) or (dev, st.st_ino) != (m.dev, m.inode):
                    return None
                info = read_elf_info(f, st.st_size, want_sections=False)
        except (OSError, ElfError, ValueError):
            return None
        return facts_from_info(info, m.path, dev, st.st_ino)

    def _read(self, pid: int, m: Mapping) -> ObjectFacts:
        errors = []
        for open_candidate in _open_candidates(pid, m, self.proc):
            try:
                with open(open_candidate(), "rb") as f:
                    st = os.fstat(f.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        errors.append("not a regular file")
                        continue
                    info = read_elf_info(f, st.st_size, want_sections=False)
                return facts_from_info(info, m.path, m.dev, m.inode)
            except ElfError as exc:
                errors.append(f"not a readable ELF file ({exc})")
                break  # the file opened: another path to it will not parse better
            except (OSError, ValueError) as exc:
                errors.append(getattr(exc, "strerror", None) or str(exc))
        return ObjectFacts(
            object_id=fallback_id(m.path, m.dev, m.inode),
            path=m.path,
            build_id=None,
            elf_type=None,
            phdrs=[],
            inode=m.inode,
            dev=m.dev,
            reason="unreadable: " + "; ".join(dict.fromkeys(errors)),
        )
