"""The unwind table cache and `table_for`: a table is built once per build ID, the cache's
files cannot be turned against the (root) recorder, and bad input is a TableProblem value."""

from __future__ import annotations

import os
import stat
import struct
import threading
import zlib
from pathlib import Path

import pytest

from symbolizer.options import default_cache_dir as symbolizer_default_cache_dir
from tests.helpers.unwind_cache import BID_HEX, EH_ADDR, cache_file, object_bytes, object_file
from tests.helpers.unwind_synth import Cie, Fde, advance, def_cfa_offset, eh_frame, elf
from unwind import cache as cache_mod
from unwind.build import TableProblem
from unwind.cache import TableCache, default_cache_dir, table_for, valid_build_id
from unwind.table import CFA_RSP, UnwindTable


@pytest.fixture
def obj(tmp_path: Path) -> Path:
    return object_file(tmp_path)


def test_default_root_is_the_symbolizers(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == symbolizer_default_cache_dir() == str(tmp_path / "ebpf-profiler")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == symbolizer_default_cache_dir()


@pytest.mark.parametrize("bid,ok", [
    ("abcd", True), ("93ac61ec5a8eb1396f9fbd350e3169a558528a40", True), ("ab" * 64, True),
    ("ab", False), ("abc", False), ("ABCD", False), ("ab" * 65, False), ("../../etc", False),
    ("abcd/", False), ("ab\0cd", False), ("", False), (None, False), (1234, False),
    ("abcd\n", False),
])
def test_build_id_validation(bid, ok):
    assert valid_build_id(bid) is ok


def test_cold_build_writes_0600_file_in_0700_dirs_and_warm_start_reads_it(tmp_path, obj):
    root = tmp_path / "cache"
    cold = TableCache(str(root))
    t = cold.table_for(str(obj))
    assert isinstance(t, UnwindTable) and t.build_id == BID_HEX
    assert [(r.pc, r.cfa_rule, r.cfa_offset) for r in t][:2] == [(0x1000, CFA_RSP, 8),
                                                               (0x1001, CFA_RSP, 16)]
    assert cold.stats.built == 1 and cold.stats.disk_writes == 1
    f = cache_file(root)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(f.parent.parent.stat().st_mode) == 0o700
    assert not [p for p in f.parent.iterdir() if p.name.startswith(".tmp-")]

    warm = TableCache(str(root))
    again = warm.table_for(str(obj))  # build ID read from the file, table from the cache
    assert isinstance(again, UnwindTable) and again.rows == t.rows
    assert warm.stats.built == 0 and warm.stats.disk_hits == 1
    # with the build ID known, the object is not even opened
    by_id = TableCache(str(root)).table_for(str(tmp_path / "gone"), BID_HEX)
    assert isinstance(by_id, UnwindTable) and by_id.rows == t.rows


def test_memory_hit_on_the_second_call(obj, tmp_path):
    c = TableCache(str(tmp_path / "c"))
    first = c.table_for(str(obj), BID_HEX)
    assert c.table_for(str(obj), BID_HEX) is first
    assert c.stats.memory_hits == 1 and c.stats.built == 1


def _objects(tmp_path: Path, n: int) -> list[tuple[Path, str]]:
    out = []
    for i in range(n):
        bid = bytes([i + 1]) * 20
        p = tmp_path / f"lib{i}.so"
        p.write_bytes(object_bytes(build_id=bid))
        out.append((p, bid.hex()))
    return out


def test_memory_is_bounded_by_bytes_least_recently_used_first(tmp_path):
    objs = _objects(tmp_path, 5)
    size = len(TableCache(None, use_disk=False).table_for(str(objs[0][0])).rows)
    # room for the rows of four tables (each is remembered under its file and its build ID,
    # counted once)
    c = TableCache(str(tmp_path / "c"), max_bytes=4 * size)
    for p, bid in objs[:4]:
        c.table_for(str(p), bid)
    assert c.bytes == 4 * size
    c.table_for(str(objs[0][0]), objs[0][1])  # the first is now the most recent
    c.table_for(str(objs[4][0]), objs[4][1])
    assert c.bytes == 4 * size
    hits = c.stats.memory_hits
    c.table_for(str(objs[0][0]), objs[0][1])
    assert c.stats.memory_hits == hits + 1  # kept
    disk = c.stats.disk_hits
    c.table_for(str(objs[1][0]), objs[1][1])
    assert c.stats.disk_hits == disk + 1  # the least recent: dropped, read from disk again


def test_a_table_over_a_quarter_of_the_bound_is_not_kept(obj, tmp_path):
    size = len(TableCache(None, use_disk=False).table_for(str(obj)).rows)
    c = TableCache(str(tmp_path / "c"), max_bytes=4 * size - 1)
    c.table_for(str(obj), BID_HEX)
    c.table_for(str(obj), BID_HEX)
    assert c.bytes == 0 and c.stats.memory_hits == 0 and c.stats.disk_hits == 1


def test_no_table_is_kept_in_memory_with_max_bytes_zero(obj, tmp_path):
    c = TableCache(str(tmp_path / "c"), max_bytes=0)
    first = c.table_for(str(obj), BID_HEX)
    assert isinstance(first, UnwindTable) and c.bytes == 0
    again = c.table_for(str(obj), BID_HEX)
    assert isinstance(again, UnwindTable) and again is not first and c.stats.disk_hits == 1


@pytest.mark.parametrize("damage", [
    lambda b: b"",
    lambda b: b[:20],
    lambda b: b[:-3],
    lambda b: b"garbage" * 10,
    lambda b: b[:8] + b"\x63\x00" + b[10:],           # another format version
    lambda b: b[:14] + b"\xff\x00\x00\x00" + b[18:],  # row count too large
])
def test_damaged_cache_file_is_ignored_and_rebuilt(tmp_path, obj, damage):
    root = tmp_path / "cache"
    good = TableCache(str(root)).table_for(str(obj))
    assert isinstance(good, UnwindTable)
    f = cache_file(root)
    f.write_bytes(damage(f.read_bytes()))
    c = TableCache(str(root))
    t = c.table_for(str(obj), BID_HEX)
    assert isinstance(t, UnwindTable) and t.rows == good.rows
    assert c.stats.built == 1 and c.stats.disk_hits == 0
    assert UnwindTable.from_bytes(f.read_bytes()).rows == good.rows  # rewritten whole


def test_cache_file_of_another_build_id_is_not_trusted(tmp_path, obj):
    root = tmp_path / "cache"
    TableCache(str(root)).table_for(str(obj))
    other = "ff" * 20
    cache_file(root, other).parent.mkdir(mode=0o700)
    os.rename(cache_file(root), cache_file(root, other))  # a table filed under another ID
    c = TableCache(str(root))
    assert isinstance(c.table_for(str(tmp_path / "gone"), other), TableProblem)


def test_bad_build_id_never_becomes_a_path(tmp_path, obj):
    root = tmp_path / "cache"
    c = TableCache(str(root))
    for bad in ("../../../../tmp/x", "ABCDEF", "abc", "ab" * 65):
        got = c.table_for(str(obj), bad)
        assert isinstance(got, TableProblem) and got.reason == "bad-build-id"
    assert not root.exists()


def test_build_id_mismatch_is_a_problem_and_stores_nothing(tmp_path, obj):
    root = tmp_path / "cache"
    c = TableCache(str(root))
    got = c.table_for(str(obj), "ee" * 20)
    assert isinstance(got, TableProblem) and got.reason == "build-id-mismatch"
    assert not cache_file(root, "ee" * 20).exists()


def test_object_without_build_id_is_cached_in_memory_only(tmp_path):
    p = tmp_path / "nobid"
    p.write_bytes(object_bytes(build_id=None))
    root = tmp_path / "cache"
    c = TableCache(str(root))
    t = c.table_for(str(p))
    assert isinstance(t, UnwindTable) and t.build_id is None
    assert c.table_for(str(p)) is t and c.stats.memory_hits == 1
    assert not root.exists()
    # new bytes at the same path (a rebuilt binary): built again, not the stale table
    p.write_bytes(object_bytes(build_id=None, cfa=32))
    os.utime(p, ns=(1, 1))
    t2 = c.table_for(str(p))
    assert isinstance(t2, UnwindTable) and t2.lookup(0x1001).cfa_offset == 32


def test_odd_sized_build_id_is_memory_only(tmp_path):
    p = tmp_path / "odd"
    p.write_bytes(object_bytes(build_id=b"\x01"))  # 2 hex digits: too short to name a file
    root = tmp_path / "cache"
    t = TableCache(str(root)).table_for(str(p))
    assert isinstance(t, UnwindTable) and t.build_id is None and not root.exists()


def test_symlink_in_place_of_the_cache_file_is_not_followed(tmp_path, obj):
    root = tmp_path / "cache"
    TableCache(str(root)).table_for(str(obj))
    f = cache_file(root)
    victim = tmp_path / "victim"
    victim.write_bytes(f.read_bytes())
    f.unlink()
    f.symlink_to(victim)
    c = TableCache(str(root))
    assert isinstance(c.table_for(str(obj)), UnwindTable)
    assert c.stats.disk_hits == 0 and c.stats.built == 1  # not read through the link
    assert not f.is_symlink()  # replaced by a real file, the victim untouched
    assert victim.read_bytes() == f.read_bytes()


def test_symlinked_cache_directory_turns_the_disk_cache_off(tmp_path, obj):
    root = tmp_path / "cache"
    (root / "unwind").mkdir(parents=True, mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "unwind" / BID_HEX[:2]).symlink_to(elsewhere)
    c = TableCache(str(root))
    assert isinstance(c.table_for(str(obj)), UnwindTable)
    assert list(elsewhere.iterdir()) == [] and c.disk_problem


def test_world_writable_root_turns_the_disk_cache_off_unless_sticky(tmp_path, obj):
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o777)
    c = TableCache(str(root))
    assert isinstance(c.table_for(str(obj)), UnwindTable) and not cache_file(root).exists()
    assert "writable by other users" in c.disk_problem
    root.chmod(0o1777)  # as /tmp: others cannot rename our directory away
    c = TableCache(str(root))
    assert isinstance(c.table_for(str(obj)), UnwindTable) and cache_file(root).exists()


def test_unwritable_cache_is_reported_not_raised(tmp_path, obj):
    root = tmp_path / "cache"
    root.mkdir()
    (root / "unwind").write_text("a file where the directory should be")
    c = TableCache(str(root))
    assert isinstance(c.table_for(str(obj)), UnwindTable)
    assert c.disk_problem and "not writable" in c.disk_problem


def test_fd_input_leaves_the_fd_open_and_its_offset_alone(tmp_path, obj):
    fd = os.open(obj, os.O_RDONLY)
    try:
        os.lseek(fd, 7, os.SEEK_SET)
        t = TableCache(None, use_disk=False).table_for(fd)
        assert isinstance(t, UnwindTable) and t.build_id == BID_HEX
        assert os.lseek(fd, 0, os.SEEK_CUR) == 7
    finally:
        os.close(fd)


def test_fifo_is_rejected_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result: list = []
    th = threading.Thread(target=lambda: result.append(
        TableCache(None, use_disk=False).table_for(str(fifo))), daemon=True)
    th.start()
    th.join(5)
    assert result and isinstance(result[0], TableProblem)
    assert result[0].reason == "not-regular-file"


@pytest.mark.parametrize("make,reason", [
    (lambda d: str(d), "not-regular-file"),
    (lambda d: str(d / "missing"), "unreadable"),
    (lambda d: "nul\0byte", "unreadable"),
    (lambda d: _write(d / "text", b"#!/bin/sh\n"), "not-elf"),
    (lambda d: _write(d / "short", b"\x7fELF\x02\x01"), "not-elf"),
    (lambda d: _write(d / "arm", object_bytes(machine=183)), "not-x86-64"),
    (lambda d: _write(d / "nocfi", object_bytes(sections=())), "no-eh-frame"),
])
def test_bad_input_is_a_problem_value(tmp_path, make, reason):
    got = TableCache(None, use_disk=False).table_for(make(tmp_path))
    assert isinstance(got, TableProblem) and got.reason == reason, got
    assert str(got).startswith(reason + ": ") and "\n" not in str(got)


def test_section_over_the_size_limit_is_too_big(obj):
    got = TableCache(None, use_disk=False, size_limit=16).table_for(str(obj))
    assert isinstance(got, TableProblem) and got.reason == "too-big"


def test_debug_frame_only_object(tmp_path):
    """No .eh_frame (code built without unwind tables): .debug_frame is used."""
    cfi = eh_frame([Cie(augmentation=""), Fde(0x1000, 0x20, advance(2) + def_cfa_offset(24))],
                   0, eh=False).data
    p = tmp_path / "dbg"
    p.write_bytes(elf({".debug_frame": (0, cfi)}))
    got = TableCache(None, use_disk=False).table_for(str(p))
    assert isinstance(got, UnwindTable) and got.lookup(0x1002).cfa_offset == 24


def test_zlib_compressed_debug_frame(tmp_path):
    cfi = eh_frame([Cie(augmentation=""), Fde(0x1000, 0x20, advance(2) + def_cfa_offset(24))],
                   0, eh=False).data
    chdr = struct.pack("<IIQQ", 1, 0, len(cfi), 8)  # Elf64_Chdr, ELFCOMPRESS_ZLIB
    p = tmp_path / "z"
    p.write_bytes(elf({".debug_frame": (0, chdr + zlib.compress(cfi))}))
    got = TableCache(None, use_disk=False).table_for(str(p))
    assert isinstance(got, UnwindTable) and got.lookup(0x1002).cfa_offset == 24
    # a bomb: claims more than the limit
    p.write_bytes(elf({".debug_frame": (0, struct.pack("<IIQQ", 1, 0, 1 << 40, 8)
                                        + zlib.compress(cfi))}))
    got = TableCache(None, use_disk=False).table_for(str(p))
    assert isinstance(got, TableProblem) and got.reason == "too-big"


def test_garbage_cfi_is_bad_cfi(tmp_path):
    p = tmp_path / "junk"
    p.write_bytes(elf({".eh_frame": (EH_ADDR, b"\x10\0\0\0" + b"\xee" * 16)}))
    got = TableCache(None, use_disk=False).table_for(str(p))
    assert isinstance(got, TableProblem) and got.reason == "bad-cfi"


def test_module_level_table_for_uses_the_default_root(monkeypatch, tmp_path, obj):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cache_mod, "_default", None)
    assert isinstance(table_for(str(obj)), UnwindTable)
    assert cache_file(tmp_path / "xdg" / "ebpf-profiler").exists()


def _write(p: Path, data: bytes) -> str:
    p.write_bytes(data)
    return str(p)


def test_one_build_for_two_threads_and_other_tables_go_on_meanwhile(tmp_path, monkeypatch):
    """The recorder's table loader and its stack-copy unwinder share the cache: an object
    without a build ID (no disk cache) that both want is built once, and a build in one
    thread does not hold up the other's lookups of other tables."""
    slow, other = tmp_path / "slow", tmp_path / "other"
    slow.write_bytes(object_bytes(build_id=None))
    other.write_bytes(object_bytes(build_id=None, cfa=32))
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []
    real_build = cache_mod.build_table

    def build(fd, info, **kw):
        calls.append(os.fstat(fd).st_ino)
        if os.fstat(fd).st_ino == slow.stat().st_ino:
            started.set()
            assert release.wait(timeout=30)
        return real_build(fd, info, **kw)

    monkeypatch.setattr(cache_mod, "build_table", build)
    c = TableCache(str(tmp_path / "cache"))
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(c.table_for(str(slow))))
               for _ in range(2)]
    threads[0].start()
    assert started.wait(timeout=30)
    threads[1].start()  # finds the build under way and waits for it
    t = c.table_for(str(other))  # not held up by the build in progress
    assert isinstance(t, UnwindTable) and t.lookup(0x1001).cfa_offset == 32
    release.set()
    for th in threads:
        th.join(timeout=30)
    assert len(got) == 2 and got[0] is got[1] and isinstance(got[0], UnwindTable)
    assert calls.count(slow.stat().st_ino) == 1 and c.stats.built == 2
