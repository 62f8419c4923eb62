"""Kernel facts for offline symbolization: kallsyms, the kernel's build ID, module bases, vDSO.

Only the kallsyms entries that recorded kernel frames fall in are stored by default: all of
/proc/kallsyms (~200k lines) would outweigh the samples of a short recording.
"""

from __future__ import annotations

import bisect
import ctypes
import io
import itertools
from array import array

from recorder.objects import ObjectFacts, facts_from_info
from recording.elf import ElfError, find_build_id, read_elf_info
from recording.schema import Row

TEXT_TYPES = frozenset("tTwW")


class KernelSymbols:
    """The text symbols of /proc/kallsyms, sorted by address, held compactly: ~120k symbols as
    Python lists of ints and strs took 16 MiB of the recorder's heap for its whole run; as
    arrays of addresses and name offsets into one bytes object they take ~4 MiB."""

    def __init__(self, entries: list[tuple[int, str, str | None]]) -> None:
        entries.sort()
        self.addrs = array("Q", (e[0] for e in entries))
        names = [e[1].encode() for e in entries]
        self._ends = array("I", itertools.accumulate(len(n) for n in names))
        self._names = b"".join(names)
        self._module_names: list[str | None] = [None]
        index: dict[str | None, int] = {None: 0}
        mods = array("H")
        for e in entries:
            i = index.get(e[2])
            if i is None:
                i = index[e[2]] = len(self._module_names)
                self._module_names.append(e[2])
            mods.append(i)
        self._modules = mods
        self._emitted: set[int] = set()

    @classmethod
    def load(cls, path: str = "/proc/kallsyms") -> KernelSymbols:
        entries: list[tuple[int, str, str | None]] = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in TEXT_TYPES:
                    continue
                addr = int(parts[0], 16)
                if addr == 0:
                    continue  # kptr_restrict hides addresses from non-root readers
                module = parts[3].strip("[]") if len(parts) > 3 else None
                entries.append((addr, parts[2], module))
        return cls(entries)

    def __len__(self) -> int:
        return len(self.addrs)

    def name(self, i: int) -> str:
        start = self._ends[i - 1] if i else 0
        return self._names[start:self._ends[i]].decode()

    def module(self, i: int) -> str | None:
        return self._module_names[self._modules[i]]

    def _row(self, i: int) -> Row:
        size = self.addrs[i + 1] - self.addrs[i] if i + 1 < len(self.addrs) else 0
        return {"record": "ksym", "addr": self.addrs[i], "size": size, "name": self.name(i),
                "module": self.module(i)}

    def rows_for(self, addresses: set[int]) -> list[Row]:
        """Rows for symbols containing `addresses` that were not written before."""
        rows: list[Row] = []
        for a in addresses:
            i = bisect.bisect_right(self.addrs, a) - 1
            if i >= 0 and i not in self._emitted:
                self._emitted.add(i)
                rows.append(self._row(i))
        return rows

    def all_rows(self) -> list[Row]:
        self._emitted.update(range(len(self.addrs)))
        return [self._row(i) for i in range(len(self.addrs))]


def kernel_build_id(path: str = "/sys/kernel/notes") -> str | None:
    """The running kernel's GNU build ID, from its notes section as the kernel exports it."""
    try:
        with open(path, "rb") as f:
            return find_build_id(f.read(), "<")
    except (OSError, ElfError):
        return None


def module_rows(path: str = "/proc/modules") -> list[Row]:
    rows: list[Row] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6:
                    rows.append({"record": "kmod", "name": parts[0], "size": int(parts[1]),
                                 "addr": int(parts[5], 16)})
    except OSError:
        pass
    return rows


def read_vdso(maps_path: str = "/proc/self/maps") -> ObjectFacts | None:
    """The vDSO image as mapped into this process; every process of the same ABI maps the
    same image (arch/x86/entry/vdso), so one copy serves all their [vdso] mappings."""
    with open(maps_path) as f:
        for line in f:
            if line.rstrip().endswith("[vdso]"):
                start_s, end_s = line.split()[0].split("-")
                start, end = int(start_s, 16), int(end_s, 16)
                image = ctypes.string_at(start, end - start)
                try:
                    info = read_elf_info(io.BytesIO(image), len(image), want_sections=False)
                except ElfError:
                    return None
                facts = facts_from_info(info, "[vdso]", "00:00", 0, data=image)
                if facts.build_id is None:
                    return ObjectFacts(**{**facts.__dict__, "object_id": "[vdso]"})
                return facts
    return None
