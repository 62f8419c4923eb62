"""What every address of one recorded mapping shares, worked out once per mapping.

A system-wide recording holds thousands of short-lived processes (a shell loop, a compiler
driver) that map the same few objects, each at its own addresses: 30 s of one gave 21,800
distinct (process, address) frames over 2,400 processes. Worked out per frame, the object,
its program headers, its symbol table, the pprof mapping and the basename cost ~13 us of a
frame's ~15 us. Here they are taken once per mapping (MappingFacts), and a name once per
(object, ELF address) over all the processes that map the object (Resolver's name memo), so
that a frame costs a bisect, an addition and two dict lookups.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from profiles.model import FrameKind, MappingInfo
from symbolizer.normalize import VDSO_PATH, Mapping, ObjectInfo, strip_deleted
from symbolizer.report import Unresolved

# (first file offset, end, ELF address minus file offset), per PT_LOAD segment with file bytes
Span = tuple[int, int, int]


def object_label(path: str) -> str:
    """Pyroscope names unresolved frames `<module basename>+0x<offset>`."""
    return os.path.basename(strip_deleted(path)) or path


def file_spans(obj: ObjectInfo) -> tuple[Span, ...]:
    """Each PT_LOAD segment's file bytes with the constant that turns a file offset there into
    its ELF address: the first match of recording.elf.vaddr_of_offset, without its loop per
    address. Empty when two segments' file ranges overlap (a crafted object: the first match
    then depends on the order), so that every address takes vaddr_of_offset itself."""
    spans = tuple((seg.offset, seg.offset + seg.filesz, seg.vaddr - seg.offset)
                  for seg in obj.loads if seg.filesz > 0)
    ordered = sorted(spans)
    if any(a[1] > b[0] for a, b in itertools.pairwise(ordered)):
        return ()
    return spans


@dataclass(slots=True, eq=False)
class MappingFacts:
    """One recorded mapping of a file, with what its frames share. `spans` is empty when
    addresses must go the slow way (symbolizer/resolve.py): no object recorded, no program
    headers, overlapping segments."""

    mapping: Mapping
    kind: FrameKind
    label: str
    obj: ObjectInfo | None
    build_id: str | None
    info: MappingInfo
    spans: tuple[Span, ...]  # the object's file_spans
    bias: int  # file offset minus absolute address (mmap maps the file at a page distance)
    # reason -> the report's key for this mapping's unnamed frames
    unresolved: dict[str, Unresolved] | None = None

    def elf_addr(self, addr: int) -> int | None:
        """The ELF address of an absolute address, None outside every segment's file bytes
        (the page-rounding case of vaddr_of_offset, or no segments: the slow way decides)."""
        offset = addr + self.bias
        for lo, hi, delta in self.spans:
            if lo <= offset < hi:
                return offset + delta
        return None

    def unresolved_for(self, reason: str) -> Unresolved:
        if self.unresolved is None:
            self.unresolved = {}
        u = self.unresolved.get(reason)
        if u is None:
            u = self.unresolved[reason] = Unresolved(self.mapping.path, self.build_id, reason)
        return u


def mapping_facts(m: Mapping, obj: ObjectInfo | None, info: MappingInfo,
                  spans: tuple[Span, ...]) -> MappingFacts:
    """`spans`: file_spans(obj), which the caller keeps per object."""
    kind = FrameKind.VDSO if m.path == VDSO_PATH else FrameKind.USER
    return MappingFacts(m, kind, object_label(m.path), obj, obj.build_id if obj else None,
                        info, spans, m.file_offset - m.start)
