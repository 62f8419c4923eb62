"""The kernel's unwind-row array over a long run: rows of objects no process maps any more
are given back when another object needs them (recorder/row_space.py, recorder/unwinder.py),
so a recorder running for days does not fill up with the tables of processes long gone."""

from __future__ import annotations

import dataclasses
import itertools
import types
from typing import ClassVar

import pytest

from recorder.bpf_program import MAX_OBJECTS
from recorder.objects import ObjectFacts
from recorder.procfs import Mapping
from recorder.row_space import RowSpace
from recorder.unwinder import KernelTables
from unwind.table import ROW


def test_row_space_first_fit_merges_and_gives_back_the_tail():
    s = RowSpace(100)
    a, b, c = s.alloc(30), s.alloc(30), s.alloc(30)
    assert (a, b, c) == (0, 30, 60) and s.alloc(20) is None and s.used == 90
    s.free(30, 30)
    assert s.alloc(40) is None  # 30 free in the middle, 10 at the end: no extent of 40
    assert s.alloc(25) == 30 and s.alloc(5) == 55 and s.alloc(1) == 90
    s.free(0, 30)
    s.free(30, 25)
    s.free(55, 5)  # merges into one extent of 60 at 0
    assert s.alloc(60) == 0
    for first, n in ((0, 60), (60, 30), (90, 1)):
        s.free(first, n)
    assert s.used == 0 and s.alloc(100) == 0  # everything merged back, tail included


class FakeProgram:
    def __init__(self) -> None:
        self.wanted = bytearray(MAX_OBJECTS * 8)
        self.rows: dict[int, int] = {}  # first row -> rows written
        self.entries: dict[int, list] = {}
        self.exited: set[int] = set()  # processes the exit tracepoint removed from `seen`

    def write_rows(self, at: int, rows: bytes) -> None:
        self.rows[at] = len(rows) // 8

    def set_mappings(self, pid: int, entries: list) -> None:
        self.entries[pid] = entries

    def forget_process(self, pid: int) -> None:
        self.entries.pop(pid, None)

    def is_seen(self, pid: int) -> bool:
        return pid not in self.exited


class Tables(KernelTables):
    """KernelTables with tables of a given size per object, no files opened."""

    sizes: ClassVar[dict[str, int]] = {}
    gone: ClassVar[set[int]] = set()  # processes whose files can no longer be opened

    def _table(self, pid, m, facts):  # type: ignore[override]
        if pid in self.gone:
            return "unreadable"
        n = self.sizes[facts.object_id]
        return types.SimpleNamespace(count=n, rows=ROW.pack(0x1000, 8, 0, 1, 0) * n)


def obj(name: str) -> tuple[Mapping, ObjectFacts]:
    facts = ObjectFacts(name, f"/usr/lib/{name}", name * 2, "DYN",
                        [{"offset": 0, "vaddr": 0, "filesz": 4096, "memsz": 4096, "flags": 5}],
                        1, "08:01")
    return Mapping(0x10000, 0x11000, "r-xp", 0, "08:01", 1, facts.path), facts


@pytest.fixture
def tables(tmp_path):
    for pid in range(1, 10):  # every pid "runs": /proc/PID/stat in state S
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (x) S 1")
    t = Tables(FakeProgram(), cache=None, capacity_rows=1000,  # type: ignore[arg-type]
               proc=str(tmp_path))
    yield t
    t.close()


def loaded(t: KernelTables, pid: int) -> list[int]:
    return [e.table_len for e in t._program.entries.get(pid, [])]  # type: ignore[attr-defined]


def test_an_unused_object_gives_its_rows_to_a_new_one(tables):
    tables.sizes = {"cc1": 300, "as": 300, "python3.11": 450}
    tables.set_process(1, [obj("cc1")])
    tables.set_process(2, [obj("as")])
    tables.wait_idle()
    assert loaded(tables, 1) == [300] and loaded(tables, 2) == [300]
    # the compiler exits; its rows stay until needed (a new cc1 would find them)
    tables.forget(1)
    tables.set_process(3, [obj("cc1")])
    tables.wait_idle()
    assert loaded(tables, 3) == [300] and tables.stats.objects_evicted == 0
    tables.forget(3)
    tables.forget(2)
    # python3.11 starts last: without eviction 400 rows are left, with it there is room
    tables.set_process(4, [obj("python3.11")])
    tables.wait_idle()
    assert loaded(tables, 4) == [450]
    assert tables.stats.objects_evicted >= 1 and tables.stats.objects_over_capacity == 0
    assert tables.rows_used <= 1000
    # the tables that hold rows now never overlap
    extents = sorted(o.where for o in tables._by_index if o.where and o.where[1])
    assert all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(extents))
    assert sum(n for _, n in extents) == tables.rows_used
    # the summary says what is in the array, and what was copied into it over the run apart
    summary = tables.summary()
    assert summary["rows"] == tables.rows_used == 300 + 450  # cc1 kept, "as" evicted
    assert summary["rows_loaded"] == 300 + 300 + 450 > summary["rows_capacity"]
    assert summary["objects_evicted"] == tables.stats.objects_evicted


def test_objects_in_use_are_never_evicted_and_a_late_fit_is_retried(tables, monkeypatch):
    import recorder.unwinder as unwinder

    monkeypatch.setattr(unwinder, "RETRY_S", 0.0)
    tables.sizes = {"libc": 400, "ld": 400, "big": 450}
    tables.set_process(1, [obj("libc"), obj("ld")])
    tables.wait_idle()
    tables.set_process(2, [obj("big")])
    tables.wait_idle()
    assert loaded(tables, 2) == [0] and tables.stats.objects_over_capacity == 1
    assert loaded(tables, 1) == [400, 400]  # still mapped: kept
    tables.forget(1)  # their process exits: the rows may go
    tables.set_process(3, [obj("big")])  # the next process mapping it gets it loaded
    tables.wait_idle()
    assert loaded(tables, 3) == [450] and loaded(tables, 2) == [450]
    assert tables.stats.objects_over_capacity == 0


def test_a_table_no_frame_uses_gives_way_to_one_a_new_process_needs(tables, monkeypatch):
    """A host full of long-running processes that are never sampled (daemons) has its rows
    taken by tables no frame uses: a table unused for a while goes, even though a process
    maps it (the BPF program asks for it again if a frame needs it); a used table stays."""
    import recorder.unwinder as unwinder

    monkeypatch.setattr(unwinder, "UNUSED_TABLE_S", 0.0)
    monkeypatch.setattr(unwinder, "USE_SCAN_S", 0.0)
    tables.sizes = {"libdaemon": 500, "libc": 400, "app": 450}
    tables.set_process(1, [obj("libdaemon"), obj("libc")])
    tables.wait_idle()
    assert loaded(tables, 1) == [500, 400]
    libc = tables._objects["libc"]
    wanted = tables._program.wanted  # type: ignore[attr-defined]
    wanted[libc.index * 8 + 1] = 1  # a frame used libc's table (bpf/profile.c)
    tables._scanned_at = 0.0
    tables._scan_used()
    assert wanted[libc.index * 8 + 1] == 0 and libc.last_used > 0
    tables.set_process(2, [obj("app"), obj("libc")])
    tables.wait_idle()
    assert loaded(tables, 2) == [450, 400]
    assert loaded(tables, 1) == [0, 400]  # the daemon's library lost its rows, libc kept them
    daemon = tables._objects["libdaemon"]
    assert daemon.where is None and wanted[daemon.index * 8] == 0  # it may be asked for again


def test_an_object_first_seen_in_a_process_gone_is_loaded_through_the_next(tables):
    """A short-lived process is often gone before the loader reaches it; with a cold table
    cache its objects could not be opened through it, and they stayed without a table for
    the whole run (every later process unwound libc and ld.so by frame pointers)."""
    tables.sizes = {"ld.so": 40, "libc": 300}
    tables.gone = {1}
    tables.set_process(1, [obj("ld.so"), obj("libc")])
    tables.wait_idle()
    assert loaded(tables, 1) == [0, 0] and tables.stats.objects_without_table == 0
    tables.set_process(2, [obj("ld.so"), obj("libc")])
    tables.wait_idle()
    assert loaded(tables, 2) == [40, 300]
    assert tables.stats.problems == {"unreadable": 2}  # once per object, not per attempt


def test_a_table_asked_for_is_loaded_once_the_main_loop_pokes_the_sleeping_loader(tables):
    """A large object's table is loaded when a frame asks for it (the BPF program sets its
    `wanted` byte). The loader does not poll for that: it sleeps until poke(), which the main
    loop calls at each of its wake-ups; a frame's "used" byte (byte 1) is no request."""
    tables.sizes = {"libLLVM": 500}
    mapping, facts = obj("libLLVM")
    facts.phdrs[0]["memsz"] = 64 << 20  # over EAGER_TEXT_BYTES: loaded on demand only
    tables.set_process(1, [(mapping, facts)])
    tables.wait_idle()
    llvm = tables._objects["libLLVM"]
    assert loaded(tables, 1) == [0] and llvm.where is None
    wanted = tables._program.wanted  # type: ignore[attr-defined]
    wanted[llvm.index * 8 + 1] = 1  # used (by a frame-pointer walk): not a request
    tables.poke()
    assert not tables._asked
    wanted[llvm.index * 8] = 1  # asked for
    tables.poke()
    tables.wait_idle()
    assert loaded(tables, 1) == [500] and wanted[llvm.index * 8] == 2  # answered


def test_a_process_gone_before_its_entry_is_written_loses_the_kernel_entry(tables):
    tables.sizes = {"libc": 10}
    tables._program.exited.add(2)  # type: ignore[attr-defined]
    tables.set_process(1, [obj("libc")])
    tables.set_process(2, [obj("libc")])
    tables.wait_idle()
    assert loaded(tables, 1) == [10] and 2 not in tables._program.entries  # type: ignore
    assert 2 in tables._procs  # ours stays, for the stack copies still to come


def test_the_bias_of_a_mapping_is_that_of_its_own_start(tables):
    """The ELF address of an (object, offset) is remembered; the bias is per mapping."""
    tables.sizes = {"libc": 10}
    m, facts = obj("libc")
    moved = dataclasses.replace(m, start=0x7F0000010000, end=0x7F0000011000)
    tables.set_process(1, [(m, facts)])
    tables.set_process(2, [(moved, facts)])
    tables.wait_idle()
    first, second = (tables._program.entries[p][0] for p in (1, 2))  # type: ignore
    assert (first.bias, second.bias) == (0x10000, 0x7F0000010000)
