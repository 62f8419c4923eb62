"""Per-mapping facts and the name memo (symbolizer/mapping_facts.py): the fast ELF address
agrees with recording.elf.vaddr_of_offset wherever it gives one, and processes that map one
object at different addresses share its name lookups but keep their own frames."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.model import FrameKind
from recording.elf import LoadSegment, vaddr_of_offset
from symbolizer.mapping_facts import file_spans, mapping_facts
from symbolizer.normalize import Mapping, MappingIndex, ObjectInfo
from symbolizer.options import SymbolizeOptions
from symbolizer.resolve import Resolver
from symbolizer.sources import ObjectSymbols
from symbolizer.symtab import SymbolEntry, SymbolTable

segments = st.lists(
    st.builds(LoadSegment, st.integers(0, 0x8000), st.integers(0, 0x40_0000),
              st.integers(0, 0x3000), st.integers(0, 0x4000), st.just(5)),
    min_size=1, max_size=4)


def _obj(loads: tuple[LoadSegment, ...]) -> ObjectInfo:
    return ObjectInfo("bid", "/lib/libx.so", "bid", "DYN", loads)


@settings(max_examples=300, deadline=None)
@given(segments, st.integers(0, 8), st.integers(1, 16), st.data())
def test_fast_elf_address_is_vaddr_of_offset(loads, off_pages, len_pages, data):
    loads = tuple(loads)
    start = 0x7F00_0000_0000
    m = Mapping(start, start + len_pages * 0x1000, off_pages * 0x1000, "/lib/libx.so", "bid")
    obj = _obj(loads)
    facts = mapping_facts(m, obj, None, file_spans(obj))  # type: ignore[arg-type]
    overlap = not file_spans(obj) and any(s.filesz for s in loads)
    for addr in data.draw(st.lists(st.integers(m.start, m.end - 1), min_size=1, max_size=20)):
        offset = addr - m.start + m.file_offset
        fast = facts.elf_addr(addr)
        if fast is not None:
            assert fast == vaddr_of_offset(loads, offset)
        first = next((s for s in loads if s.offset <= offset < s.offset + s.filesz), None)
        if first is not None and not overlap:
            # inside a segment's file bytes the fast way always answers
            assert fast == offset - first.offset + first.vaddr


def test_overlapping_segments_leave_every_address_to_vaddr_of_offset():
    obj = _obj((LoadSegment(0, 0, 0x2000, 0x2000, 5), LoadSegment(0x1000, 0x9000, 0x800,
                                                                  0x800, 5)))
    assert file_spans(obj) == ()


def _resolver(syms: ObjectSymbols, calls: list[ObjectInfo]) -> tuple[Resolver, MappingIndex]:
    index = MappingIndex()
    text = (LoadSegment(0, 0, 0x500, 0x500, 4), LoadSegment(0x1000, 0x1000, 0x800, 0x800, 5))
    index.add_object(ObjectInfo("bid", "/lib/libx.so", "bid", "DYN", text))
    for pid, base in ((10, 0x7F10_0000_0000), (11, 0x7F20_0000_0000)):
        index.add_process(pid, 0, 1)
        index.add_mapping(pid, 0, Mapping(base + 0x1000, base + 0x2000, 0x1000, "/lib/libx.so",
                                          "bid"))
    r = Resolver(SymbolizeOptions(cache_dir=None), index)

    def symbols(obj: ObjectInfo) -> ObjectSymbols:
        calls.append(obj)
        return syms

    r.symbols = symbols  # type: ignore[method-assign]
    return r, index


def test_processes_share_names_but_not_frames():
    table = SymbolTable.build([SymbolEntry(0x1100, 0x100, b"work"),
                               SymbolEntry(0x1200, 0x10, b"leaf")])
    calls: list[ObjectInfo] = []
    r, index = _resolver(ObjectSymbols(table, "test", True), calls)
    got = {}
    for pid, base in ((10, 0x7F10_0000_0000), (11, 0x7F20_0000_0000)):
        snap = index.snapshot_for(pid, 2)
        # a return address just past `work` is looked up at addr - 1, inside it
        (ret,), why = r.user(snap, pid, base + 0x1200, True)
        (leaf,), _ = r.user(snap, pid, base + 0x1204, False)
        assert why is None
        got[pid] = (ret, leaf)
        assert (ret.name, ret.elf_addr, ret.address) == ("work", 0x11FF, base + 0x1200)
        assert (leaf.name, leaf.elf_addr, leaf.address) == ("leaf", 0x1204, base + 0x1204)
        assert ret.kind is FrameKind.USER and ret.build_id == "bid"
        assert ret.mapping is not None and ret.mapping.start == base + 0x1000
        assert ret.mapping is leaf.mapping  # one pprof Mapping per recorded mapping
    assert got[10][0] != got[11][0]  # their own addresses and mappings
    assert len(calls) == 2  # one symbol lookup per (object, ELF address, return or not)


def test_unnamed_address_keeps_its_mapping_label_and_reason():
    calls: list[ObjectInfo] = []
    r, index = _resolver(ObjectSymbols(SymbolTable.empty(), "test", True), calls)
    snap = index.snapshot_for(10, 2)
    (f,), why = r.user(snap, 10, 0x7F10_0000_1300, False)
    assert f.name == "libx.so+0x1300" and f.reason and why is not None
    assert why.object == "/lib/libx.so" and why.reason == f.reason
    (g,), why2 = r.user(index.snapshot_for(11, 2), 11, 0x7F20_0000_1300, False)
    assert g.name == f.name and why2 == why and g.address != f.address


def test_name_memo_stays_bounded(monkeypatch):
    import symbolizer.resolve as resolve

    monkeypatch.setattr(resolve, "_NAMES_KEPT", 2)
    table = SymbolTable.build([SymbolEntry(0x1000 + 0x10 * i, 0x10, f"f{i}".encode())
                               for i in range(8)])
    r, index = _resolver(ObjectSymbols(table, "test", True), [])
    snap = index.snapshot_for(10, 2)
    for i in range(8):
        (f,), _ = r.user(snap, 10, 0x7F10_0000_1000 + 0x10 * i, False)
        assert f.name == f"f{i}"
    assert sum(len(d) for d in r._names.values()) <= 2
