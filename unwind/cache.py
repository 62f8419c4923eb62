"""Unwind tables by build ID: built once per machine, kept in memory (LRU) and on disk.

Memory holds at most `capacity` entries and `max_bytes` of rows (least recently used dropped
first); a table larger than a quarter of `max_bytes` is not kept there at all (libLLVM's is
15 MiB: it would push out every other), the disk cache serves it again.

A build ID names the exact bytes of an object, so a table built once is valid forever:
{cache_dir}/unwind/xx/rest.tbl, next to the symbolizer's {cache_dir}/symbols/ tree. A build
ID comes from a file the recorder does not control (a process maps what it likes), so it is
checked to be 4..128 lowercase hex digits, even in number, before it names a path. Objects
without a build ID are cached in memory only, by (device, inode, size, mtime): the same path
may hold other bytes later.

One cache serves the recorder's table loader thread and its main thread (the stack-copy
unwinder, recorder/stack_copies.py), so the memory is guarded by a lock and a build is done
once: a thread that wants a table another thread is building waits for it (the lock is not
held over a build, so lookups of other tables go on meanwhile). Before, each had its own cache
and an object without a build ID (no disk cache: py-spy's 8 MB binary, 0.25 s) was built twice.

The recorder runs as root, in a directory a user may own: the cache's directories are used
only when they are real directories (not symlinks) owned by us and writable by nobody else;
files are written 0600 to a temporary name and renamed, and read with O_NOFOLLOW. A cache
file that is short, corrupt, of another format or builder version, or for another build ID
is ignored and rebuilt; nothing here raises for bad input.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from unwind.build import MAX_CFI_BYTES, TableProblem, build_table, object_info
from unwind.table import HEADER, MAX_BUILD_ID_BYTES, ROW, TableFormatError, UnwindTable

_BUILD_ID = re.compile(r"(?:[0-9a-f]{2}){2,64}")
# A table has at most one row per byte of code; 16M rows (256 MB) is far above any object
# and bounds what a damaged cache file can make us read.
MAX_TABLE_FILE = HEADER.size + MAX_BUILD_ID_BYTES + ROW.size * (16 << 20)
DEFAULT_CAPACITY = 64
DEFAULT_MAX_BYTES = 64 << 20


def default_cache_dir() -> str:
    """The symbolizer's default cache root (symbolizer.options.default_cache_dir), so one
    directory holds both caches; not imported, as unwind/ must not depend on symbolizer/
    (tests/unit/test_unwind_cache.py checks that the two agree)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ebpf-profiler")


def valid_build_id(build_id: object) -> bool:
    return isinstance(build_id, str) and _BUILD_ID.fullmatch(build_id) is not None


@dataclass
class CacheStats:
    memory_hits: int = 0
    disk_hits: int = 0
    built: int = 0
    build_seconds: float = 0.0
    disk_writes: int = 0
    problems: Counter[str] = field(default_factory=Counter)  # TableProblem.reason -> count


class TableCache:
    def __init__(self, cache_dir: str | None = None, *, use_disk: bool = True,
                 capacity: int = DEFAULT_CAPACITY, max_bytes: int = DEFAULT_MAX_BYTES,
                 size_limit: int = MAX_CFI_BYTES) -> None:
        root = cache_dir if cache_dir is not None else default_cache_dir()
        self.dir: str | None = os.path.join(root, "unwind") if use_disk else None
        self.capacity = max(1, capacity)
        self.max_bytes = max(0, max_bytes)
        self.bytes = 0  # rows held in memory
        self._held: dict[int, int] = {}  # id of a value in memory -> keys it is under
        self.size_limit = size_limit
        self.stats = CacheStats()
        self.disk_problem: str | None = None  # why the disk cache is off, once known
        self._mem: OrderedDict[tuple[str | int, ...], UnwindTable | TableProblem] = OrderedDict()
        self._checked_dirs: set[str] = set()
        # reentrant: _remember_hit counts a remembered problem through _problem
        self._lock = threading.RLock()
        self._building: dict[tuple[str | int, ...], threading.Event] = {}

    def table_for(self, path_or_fd: str | int, build_id: str | None = None
                  ) -> UnwindTable | TableProblem:
        """The table of an object, by path (e.g. /proc/PID/map_files/...) or open fd (not
        closed, its offset untouched). `build_id`, when given, is what the caller read from
        the object: a cached table is returned without opening it; a file whose own build ID
        differs is a problem, so no table is ever filed under a build ID it does not have."""
        if build_id is not None and not valid_build_id(build_id):
            return self._problem(TableProblem(
                "bad-build-id", f"{str(build_id)[:140]!r} is not 4-128 lowercase hex digits"))
        if build_id is not None:
            hit = self._remember_hit(("bid", build_id))
            if hit is not None:
                return hit
            table = self._load(build_id)
            if table is not None:
                self._count_disk_hit()
                self._remember(("bid", build_id), table)
                return table
        fd, owned = self._open(path_or_fd)
        if isinstance(fd, TableProblem):
            return self._problem(fd)
        try:
            return self._from_fd(fd, build_id)
        finally:
            if owned:
                os.close(fd)

    def _from_fd(self, fd: int, build_id: str | None) -> UnwindTable | TableProblem:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            return self._problem(TableProblem("unreadable", exc.strerror or str(exc)))
        if not stat.S_ISREG(st.st_mode):
            return self._problem(TableProblem("not-regular-file",
                                              "not a regular file (FIFO, device, directory?)"))
        file_key = ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            other = self._building.get(file_key)
            mine = None
            if other is None:
                mine = self._building[file_key] = threading.Event()
        if mine is None:
            assert other is not None
            # Another thread is reading this file: its result is in memory or on disk when
            # it is done (one too big for memory and without a build ID is read again here).
            other.wait()
            return self._from_file(fd, file_key, build_id, waited=True)
        try:
            return self._from_file(fd, file_key, build_id, waited=False)
        finally:
            with self._lock:
                del self._building[file_key]
            mine.set()

    def _from_file(self, fd: int, file_key: tuple[str | int, ...], build_id: str | None,
                   waited: bool) -> UnwindTable | TableProblem:
        hit = self._remember_hit(file_key)
        if isinstance(hit, UnwindTable) and build_id is not None and hit.build_id != build_id:
            hit = None  # the same inode now claimed under another build ID: read it again
        if hit is not None:
            return hit
        info = object_info(fd)
        if isinstance(info, TableProblem):
            self._remember(file_key, info)
            return self._problem(info)
        own_id = info.build_id if valid_build_id(info.build_id) else None  # else memory only
        if build_id is not None and own_id != build_id:
            return self._problem(TableProblem(
                "build-id-mismatch", f"the file's build ID is {own_id}, not {build_id} "
                                     "(replaced since it was mapped?)"))
        # (a caller that gave the build ID has looked on disk already, unless it waited for
        # the thread that was building the table)
        if (build_id is None or waited) and own_id is not None:
            hit = self._remember_hit(("bid", own_id))
            cached = hit if hit is not None else self._load(own_id)
            if cached is not None:
                if hit is None:
                    self._count_disk_hit()
                self._remember(file_key, cached)
                return cached
        t0 = time.perf_counter()
        built = build_table(fd, info, size_limit=self.size_limit)
        with self._lock:
            self.stats.build_seconds += time.perf_counter() - t0
            if isinstance(built, UnwindTable):
                self.stats.built += 1
        self._remember(file_key, built)
        if isinstance(built, TableProblem):
            return self._problem(built)
        built.build_id = own_id
        if own_id is not None:
            self._remember(("bid", own_id), built)
            self._store(built)
        return built

    def _count_disk_hit(self) -> None:
        with self._lock:
            self.stats.disk_hits += 1

    def _problem(self, problem: TableProblem) -> TableProblem:
        with self._lock:
            self.stats.problems[problem.reason] += 1
        return problem

    @staticmethod
    def _open(path_or_fd: str | int) -> tuple[int, bool] | tuple[TableProblem, bool]:
        if isinstance(path_or_fd, int):
            return path_or_fd, False
        try:
            # O_NONBLOCK: a FIFO put where an object was must not block the recorder; fstat
            # then rejects it. Symlinks are followed: /proc/PID/map_files entries are links.
            return os.open(path_or_fd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
                           | os.O_NOCTTY), True
        except OSError as exc:
            return TableProblem("unreadable", f"{path_or_fd}: {exc.strerror or exc}"), False
        except ValueError as exc:  # a NUL byte in the path
            return TableProblem("unreadable", f"{path_or_fd!r}: {exc}"), False

    # memory: LRU of tables and problems
    def _remember_hit(self, key: tuple[str | int, ...]) -> UnwindTable | TableProblem | None:
        with self._lock:
            hit = self._mem.get(key)
            if hit is not None:
                self._mem.move_to_end(key)
                if isinstance(hit, UnwindTable):
                    self.stats.memory_hits += 1
                else:
                    self._problem(hit)
            return hit

    def _remember(self, key: tuple[str | int, ...], value: UnwindTable | TableProblem) -> None:
        if _size(value) > self.max_bytes // 4:
            return
        with self._lock:
            self._remember_locked(key, value)

    def _remember_locked(self, key: tuple[str | int, ...],
                         value: UnwindTable | TableProblem) -> None:
        old = self._mem.pop(key, None)
        if old is not None:
            self._release(old)
        self._mem[key] = value
        # a table is often filed under two keys (its file and its build ID): counted once
        held = self._held.get(id(value), 0)
        self._held[id(value)] = held + 1
        if not held:
            self.bytes += _size(value)
        while len(self._mem) > self.capacity or self.bytes > self.max_bytes:
            self._release(self._mem.popitem(last=False)[1])

    def _release(self, value: UnwindTable | TableProblem) -> None:
        held = self._held.pop(id(value)) - 1
        if held:
            self._held[id(value)] = held
        else:
            self.bytes -= _size(value)

    # disk
    def _path(self, build_id: str) -> tuple[str, str]:
        assert self.dir is not None and valid_build_id(build_id)
        sub = os.path.join(self.dir, build_id[:2])
        return sub, os.path.join(sub, build_id[2:] + ".tbl")

    def _load(self, build_id: str) -> UnwindTable | None:
        if self.dir is None or self.disk_problem:
            return None
        sub, path = self._path(build_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None  # absent (or a symlink planted in its place)
        try:
            st = os.fstat(fd)
            if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                    or st.st_size > MAX_TABLE_FILE or not self._dir_ok(sub, create=False)):
                return None
            data = os.pread(fd, st.st_size, 0)
            table = UnwindTable.from_bytes(data)
        except (OSError, TableFormatError):
            return None  # damaged: rebuilt and rewritten
        finally:
            os.close(fd)
        return table if table.build_id == build_id else None

    def _store(self, table: UnwindTable) -> None:
        if self.dir is None or self.disk_problem or table.build_id is None:
            return
        sub, path = self._path(table.build_id)
        try:
            if not (self._dir_ok(self.dir, create=True) and self._dir_ok(sub, create=True)):
                return
            fd, tmp = tempfile.mkstemp(dir=sub, prefix=".tmp-", suffix=".tbl")  # 0600
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(table.to_bytes())
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
            with self._lock:
                self.stats.disk_writes += 1
        except OSError as exc:
            self.disk_problem = f"{self.dir} not writable ({exc.strerror or exc})"

    def _dir_ok(self, path: str, *, create: bool) -> bool:
        """A real directory, ours, that nobody else can write (a user who could would swap
        in a symlink and have root write where they choose)."""
        if path in self._checked_dirs:
            return True
        if path == self.dir and not self._root_ok(os.path.dirname(path)):
            return False
        if create:
            os.makedirs(path, mode=0o700, exist_ok=True)
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            self.disk_problem = f"{path} is not a directory of ours; disk cache off"
            return False
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
        self._checked_dirs.add(path)
        return True

    def _root_ok(self, root: str) -> bool:
        """The cache root (the user's choice, may be a symlink) must not let others replace
        our directory in it: not group/world-writable, unless sticky (as /tmp)."""
        try:
            st = os.stat(root)
        except FileNotFoundError:
            return True  # makedirs creates it (0700)
        except OSError:
            return False
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            self.disk_problem = f"{root} is writable by other users; disk cache off"
            return False
        return True


def _size(value: UnwindTable | TableProblem) -> int:
    return len(value.rows) if isinstance(value, UnwindTable) else 0


_default: TableCache | None = None


def table_for(path_or_fd: str | int, build_id: str | None = None
              ) -> UnwindTable | TableProblem:
    """The process-wide cache's table_for (default cache directory)."""
    global _default
    if _default is None:
        _default = TableCache()
    return _default.table_for(path_or_fd, build_id)
