"""ELF object -> UnwindTable: read .eh_frame (and .debug_frame), decode, lay out the rows.

Bad input is a value, never an exception: `build_from_fd` returns a TableProblem naming why
there is no table, so the recorder can report "no table: <reason>" and fall back to frame
pointers for that object.
"""

from __future__ import annotations

import bisect
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from recording.elf import SHT_NOBITS, ElfError, ElfInfo, read_elf_info
from unwind.cfi import Bases, FdeRows, RowTuple, SectionDecoder, SectionResult
from unwind.table import CFA_END, CFA_UNDEFINED, RBP_SAME, UnwindTable

EM_X86_64 = 62
CHDR = struct.Struct("<IIQQ")  # Elf64_Chdr: ch_type, ch_reserved, ch_size, ch_addralign
ELFCOMPRESS_ZLIB = 1
ELFCOMPRESS_ZSTD = 2
# Far above any real object (Chromium's .eh_frame is ~10 MB), low enough that a hostile
# section size cannot make the recorder read gigabytes.
MAX_CFI_BYTES = 64 << 20


@dataclass(frozen=True)
class TableProblem:
    """Why an object has no unwind table. `reason` is a stable word for counting."""
    reason: str   # unreadable, not-regular-file, not-elf, not-x86-64, no-eh-frame, too-big,
    #               bad-cfi, bad-build-id, build-id-mismatch
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass
class BuildStats:
    cfi_bytes: int = 0
    fdes: int = 0
    bad_entries: int = 0
    unsupported_opcodes: int = 0
    first_problem: str | None = None
    sections: list[str] = field(default_factory=list)


class _FdReader:
    """The seek/read file interface recording.elf wants, over pread (the fd's offset, which
    the caller may share, is left alone)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos
        return pos

    def read(self, n: int) -> bytes:
        data = os.pread(self.fd, n, self.pos)
        self.pos += len(data)
        return data


def layout(fdes: Iterable[FdeRows]) -> list[RowTuple]:
    """The spec's table from per-FDE rows: sorted by pc, a CFA_UNDEFINED row at the end of
    every FDE where no other starts, overlapping FDEs cut where the next starts (the next
    FDE's first row wins), equal neighbours merged."""
    ordered = sorted((f for f in fdes if f.end > f.start and f.rows),
                     key=lambda f: (f.start, f.end))
    out: list[RowTuple] = []
    last: RowTuple | None = None

    def push(row: RowTuple) -> None:
        nonlocal last
        if last is not None and last[0] == row[0]:
            out.pop()
            last = out[-1] if out else None
        if last is None or last[1:] != row[1:]:
            out.append(row)
            last = row

    for i, f in enumerate(ordered):
        nxt = ordered[i + 1].start if i + 1 < len(ordered) else None
        limit = f.end if nxt is None else min(f.end, nxt)
        if limit <= f.start:
            continue  # same start as the next FDE: the longer one (sorted after) wins
        rows = f.rows
        if last is None or (last[0] < f.start and last[1:] != rows[0][1:]):
            out.extend(r for r in rows if r[0] < limit)  # the common case, no merging
            last = out[-1]
        else:
            for r in rows:
                if r[0] >= limit:
                    break
                push(r)
        if nxt is None or f.end < nxt:
            push((f.end, 0, 0, CFA_UNDEFINED, RBP_SAME))
    return out


def entry_row(entry: int, fdes: list[FdeRows]) -> list[FdeRows]:
    """The outermost frame at the object's entry point, where no FDE covers it.

    The kernel starts a process at e_entry (of ld.so, for a dynamic executable) with nothing
    above it on the stack: argc, argv and the environment, no return address (x86-64 psABI,
    3.4 "Process Initialization"; fs/binfmt_elf.c, start_thread). glibc's ld.so has no CFI
    for its _start, so a sample at that first instruction (a new process's first page fault,
    often) would end in a frame-pointer fallback ("fp-end") instead of the entry. One byte:
    past the first instruction the stack may already hold a return address."""
    if not entry or any(f.start <= entry < f.end for f in fdes):
        return []
    return [FdeRows(entry, entry + 1, [(entry, 0, 0, CFA_END, RBP_SAME)])]


def uncovered(extra: list[FdeRows], primary: list[FdeRows]) -> list[FdeRows]:
    """FDEs of `extra` (.debug_frame) whose range no FDE of `primary` (.eh_frame) touches."""
    spans = sorted((f.start, f.end) for f in primary if f.end > f.start)
    starts = [s for s, _ in spans]
    # a running maximum of ends, so one bisect answers "does any earlier span reach here"
    reach: list[int] = []
    for _, e in spans:
        reach.append(max(e, reach[-1]) if reach else e)
    keep = []
    for f in extra:
        i = bisect.bisect_left(starts, f.end)  # spans starting before f ends
        if i == 0 or reach[i - 1] <= f.start:
            keep.append(f)
    return keep


def _read_section(fd: int, info: ElfInfo, name: str, size_limit: int,
                  stats: BuildStats) -> tuple[bytes, int] | TableProblem | None:
    sec = info.section(name)
    if sec is None or sec.type == SHT_NOBITS or sec.size == 0:
        return None  # absent, or a debug file's placeholder
    if sec.size > size_limit:
        return TableProblem("too-big", f"{name} is {sec.size} bytes, over the limit of "
                                       f"{size_limit}")
    data = os.pread(fd, sec.size, sec.offset)
    if len(data) != sec.size:
        return TableProblem("bad-cfi", f"{name} runs past the end of the file")
    stats.cfi_bytes += len(data)
    stats.sections.append(name)
    if len(data) >= CHDR.size and CHDR.unpack_from(data)[0] in (ELFCOMPRESS_ZLIB,
                                                                 ELFCOMPRESS_ZSTD):
        got = _decompress(name, data, size_limit)
        if isinstance(got, TableProblem):
            return got
        data = got
    return data, sec.addr


def _decompress(name: str, data: bytes, size_limit: int) -> bytes | TableProblem:
    """A SHF_COMPRESSED section (gcc -gz, Go): Elf64_Chdr then the compressed bytes. Told
    apart without the section flags: no CFI entry is 1 or 2 bytes long, so a .debug_frame
    cannot start with ch_type 1 (zlib) or 2 (zstd) otherwise."""
    ch_type, _reserved, ch_size, _align = CHDR.unpack_from(data)
    if ch_type != ELFCOMPRESS_ZLIB:
        return TableProblem("bad-cfi", f"{name} is zstd-compressed: not supported")
    if ch_size > size_limit:
        return TableProblem("too-big", f"{name} inflates to {ch_size} bytes")
    try:
        out = zlib.decompressobj().decompress(data[CHDR.size:], ch_size)
    except zlib.error as exc:
        return TableProblem("bad-cfi", f"{name}: {exc}")
    if len(out) != ch_size:
        return TableProblem("bad-cfi", f"{name} inflates to {len(out)} bytes, not {ch_size}")
    return out


def _bases(info: ElfInfo) -> Bases:
    text = info.section(".text")
    got = info.section(".got")
    return Bases(text.addr if text else None, got.addr if got else None)


Decoder = Callable[[bytes, int, bool, Bases], SectionResult]


def _fast_decoder(data: bytes, vaddr: int, eh: bool, bases: Bases) -> SectionResult:
    return SectionDecoder(data, vaddr, eh=eh, bases=bases).decode()


def object_info(fd: int) -> ElfInfo | TableProblem:
    """The ELF headers of the regular file open at fd, if it is an x86-64 object."""
    try:
        size = os.fstat(fd).st_size
        info = read_elf_info(_FdReader(fd), size)
    except OSError as exc:
        return TableProblem("unreadable", exc.strerror or str(exc))
    except (ElfError, struct.error) as exc:
        return TableProblem("not-elf", str(exc) or "truncated header")
    if info.machine != EM_X86_64 or not info.is64 or not info.little_endian:
        return TableProblem("not-x86-64", f"ELF machine {info.machine}: the unwinder knows "
                                          "x86-64's registers only")
    return info


def build_table(fd: int, info: ElfInfo, *, size_limit: int = MAX_CFI_BYTES,
                decoder: Decoder = _fast_decoder,
                stats: BuildStats | None = None) -> UnwindTable | TableProblem:
    """Decode the object's CFI sections into its table (info: object_info(fd))."""
    stats = stats if stats is not None else BuildStats()
    sections: dict[str, tuple[bytes, int]] = {}
    try:
        for name in (".eh_frame", ".debug_frame"):
            got = _read_section(fd, info, name, size_limit, stats)
            if isinstance(got, TableProblem):
                return got
            if got is not None:
                sections[name] = got
    except OSError as exc:
        return TableProblem("unreadable", exc.strerror or str(exc))
    if not sections:
        return TableProblem("no-eh-frame", "no .eh_frame or .debug_frame (stripped CFI); "
                                           "frame pointers only")
    bases = _bases(info)
    fdes: list[FdeRows] = []
    for name, (data, addr) in sections.items():
        res = decoder(data, addr, name == ".eh_frame", bases)
        stats.bad_entries += res.bad_entries
        stats.first_problem = stats.first_problem or res.first_problem
        found = res.fdes
        if name == ".debug_frame" and fdes:
            # the spec: .eh_frame is what the runtime unwinds with; .debug_frame only fills
            # ranges it leaves uncovered
            found = uncovered(found, fdes)
        fdes.extend(found)
    fdes.extend(entry_row(info.entry, fdes))
    stats.fdes = len(fdes)
    stats.unsupported_opcodes = sum(1 for f in fdes if f.unsupported_opcode is not None)
    if not fdes:
        return TableProblem("bad-cfi" if stats.bad_entries else "no-eh-frame",
                            stats.first_problem or "no FDE in the CFI sections")
    return UnwindTable.from_tuples(info.build_id, layout(fdes))


class BuildKwargs(TypedDict, total=False):
    """build_table's keyword arguments."""

    size_limit: int
    decoder: Decoder
    stats: BuildStats | None


def build_from_fd(fd: int, **kwargs: Unpack[BuildKwargs]) -> UnwindTable | TableProblem:
    """object_info + build_table."""
    info = object_info(fd)
    return info if isinstance(info, TableProblem) else build_table(fd, info, **kwargs)
