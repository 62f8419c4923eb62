"""Normalization math with handmade program headers: PIE, non-PIE, shared library."""

from __future__ import annotations

from recording.elf import LoadSegment
from symbolizer.normalize import (
    AbsAddr,
    FileOffset,
    Mapping,
    MappingIndex,
    ObjectInfo,
    elf_addr_of,
    file_offset_of,
)

# A PIE as ld lays it out with -z separate-code: text at file offset 0x1000, vaddr 0x1000.
PIE = (LoadSegment(0, 0, 0x6A0, 0x6A0, 4), LoadSegment(0x1000, 0x1000, 0x2D5, 0x2D5, 5))
# Non-PIE (ET_EXEC): fixed vaddr 0x401000 for file offset 0x1000.
NOPIE = (LoadSegment(0, 0x400000, 0x5A8, 0x5A8, 4),
         LoadSegment(0x1000, 0x401000, 0x1C5, 0x1C5, 5))
# A shared object whose text vaddr differs from its offset (prelinked or custom layout).
SHLIB = (LoadSegment(0, 0, 0x500, 0x500, 4), LoadSegment(0x1000, 0x3000, 0x800, 0x800, 5))


def test_file_offset_is_distance_from_mapping_start_plus_offset():
    m = Mapping(0x5555_5555_5000, 0x5555_5555_6000, 0x1000, "/bin/x", "id")
    assert file_offset_of(m, AbsAddr(0x5555_5555_5123)) == 0x1123


def test_pie_elf_address():
    assert elf_addr_of(PIE, FileOffset(0x1123)) == 0x1123


def test_nopie_elf_address_uses_vaddr():
    assert elf_addr_of(NOPIE, FileOffset(0x1123)) == 0x401123


def test_shlib_elf_address_when_vaddr_differs_from_offset():
    assert elf_addr_of(SHLIB, FileOffset(0x1010)) == 0x3010


def test_offset_outside_every_segment():
    assert elf_addr_of(SHLIB, FileOffset(0x9000)) is None


def _index(loads, start, file_offset, elf_type="DYN"):
    idx = MappingIndex()
    idx.add_object(ObjectInfo("bid", "/lib/libx.so", "bid", elf_type, loads))
    idx.add_process(7, 0, 100)
    idx.add_mapping(7, 0, Mapping(start, start + 0x1000, file_offset, "/lib/libx.so", "bid"))
    return idx


def test_normalize_shared_library_end_to_end():
    idx = _index(SHLIB, 0x7F00_0000_1000, 0x1000)
    n = idx.normalize(idx.snapshot_for(7, 200), AbsAddr(0x7F00_0000_1010))
    assert (n.file_offset, n.elf_addr, n.reason) == (0x1010, 0x3010, None)


def test_normalize_nopie_end_to_end():
    idx = _index(NOPIE, 0x401000, 0x1000, "EXEC")
    n = idx.normalize(idx.snapshot_for(7, 200), AbsAddr(0x401123))
    assert n.elf_addr == 0x401123


def test_address_outside_mappings_has_a_reason():
    idx = _index(PIE, 0x5555_0000_1000, 0x1000)
    n = idx.normalize(idx.snapshot_for(7, 200), AbsAddr(0x10))
    assert n.mapping is None and n.elf_addr is None and "outside" in (n.reason or "")


def test_unknown_pid_has_a_reason():
    idx = _index(PIE, 0x5555_0000_1000, 0x1000)
    n = idx.normalize(idx.snapshot_for(99, 200), AbsAddr(0x5555_0000_1010))
    assert n.mapping is None and "no mappings" in (n.reason or "")


def test_snapshot_choice_latest_not_after_window_end_else_first():
    idx = MappingIndex()
    for seq, t in ((0, 100), (1, 200), (2, 300)):
        idx.add_process(1, seq, t)
    assert idx.snapshot_for(1, 250).maps_seq == 1
    assert idx.snapshot_for(1, 300).maps_seq == 2
    assert idx.snapshot_for(1, 50).maps_seq == 0  # before every snapshot: the first
