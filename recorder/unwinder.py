"""Unwind tables in the kernel, for the BPF unwinder of bpf/profile.c.

Each object's table (unwind/: built from .eh_frame once per machine, cached by build ID) is
copied once into the `unwind_rows` array (recorder/row_space.py); each process gets its
executable mappings as (start, end, bias, rows), so a new process that maps libc, ld.so and
python costs one map update, not a table build. Objects with no table (JIT code, stripped CFI,
an array that is full) get none: the BPF program takes frame-pointer steps through them. An
object no process maps any more keeps its rows and its index until another object needs the
space, the longest unused first: a recorder that runs for days does not fill up with the
objects of processes long gone.

Tables are loaded by a thread of their own: a cold build (python3.11: ~150 ms of Python) must
not delay the snapshots of other new processes, which are read from /proc while they live.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from recorder.bpf_program import KERNEL_ROW, MAX_OBJECTS, MappingEntry, ProfileProgram
from recorder.objects import ObjectFacts
from recorder.procfs import Mapping, read_exec_mappings
from recorder.row_space import RowSpace
from recording.elf import ElfError, LoadSegment, read_elf_info, vaddr_of_offset
from recording.untrusted import file_size, open_regular
from unwind.cache import TableCache
from unwind.table import CFA_PLT, CFA_UNSUPPORTED, RBP_AT_CFA, RBP_UNDEFINED, ROW, UnwindTable

# Rows per byte of CFI: Debian's libc has 150 KB of .eh_frame for 28k rows, python3.11 401 KB
# for 65k, libLLVM 950k rows: 5-6 bytes per row; 4 overestimates a little, as a size should.
CFI_BYTES_PER_ROW = 4
MIN_ROWS = 256 << 10


def estimate_rows(pids: Iterable[int], proc: str = "/proc") -> tuple[int, int]:
    """(rows, objects): the unwind rows the executable objects these processes map would need,
    from the size of their .eh_frame/.debug_frame (section headers only, no table built), so
    the kernel's row array can be sized before the BPF program is compiled."""
    seen: set[tuple[str, int]] = set()
    rows = 0
    for pid in pids:
        try:
            mappings = read_exec_mappings(f"{proc}/{pid}/maps")
        except OSError:
            continue  # exited, or a kernel thread
        for m in mappings:
            if not m.is_file or (m.dev, m.inode) in seen:
                continue
            seen.add((m.dev, m.inode))
            try:
                with open_regular(f"{proc}/{pid}/map_files/{m.map_files_name}") as f:
                    info = read_elf_info(f, file_size(f), want_sections=True)
            except (OSError, ElfError, ValueError):
                continue
            cfi = info.section(".eh_frame") or info.section(".debug_frame")
            if cfi is not None:
                rows += cfi.size // CFI_BYTES_PER_ROW
    return rows, len(seen)


def table_capacity(estimate: int, ceiling: int) -> int:
    """Rows for the kernel's array: what the running processes need, doubled for the objects
    that later processes bring, within the --unwind-table-rows ceiling."""
    return max(min(MIN_ROWS, ceiling), min(ceiling, 2 * estimate + MIN_ROWS))


# A loaded table that no frame used for this long gives way when the rows run out, even if
# processes map it (the BPF program asks for it again when a frame needs it).
UNUSED_TABLE_S = 2.0
USE_SCAN_S = 1.0  # how often the loader reads which tables frames used
RETRY_S = 1.0  # how long a table that did not fit waits before it is tried again
# The loader sleeps until there is work: a process to set up or forget (set_process and
# forget wake it) or a table the BPF program asked for, which the main loop notices at its
# own wake-ups (poke(), at least 5 a second). It polled `wanted` every 50 ms before, and each
# timed wake-up costs ~90 us of CPU on this VM (timer, futex, the GIL): 20 a second were
# half of a quiet recorder's steady 0.8% of a core.
IDLE_WAIT_S = min(USE_SCAN_S, RETRY_S)

# One object may take at most this share of the rows, so that a giant (libLLVM: ~950k rows)
# cannot leave every other object of the host to frame pointers.
MAX_OBJECT_SHARE = 0.5


def kernel_rows(rows: bytes) -> bytes:
    """unwind/table.py's 16-byte rows in bpf/profile.c's 8-byte struct row_t. An offset that
    the compact form cannot hold (not a multiple of 8, beyond 512 KiB) or an address beyond
    32 bits becomes CFA_UNSUPPORTED for the BPF unwinder (none occur in Debian's objects).

    A table has a million rows (libLLVM) but a few hundred distinct rules: each row's last 8
    bytes (offsets and rules) are converted once per distinct value, the pcs are copied as
    they are (their low 32 bits), and the two are interleaved by array slices. The per-row
    Python loop this replaced took ~1 s for libLLVM, and the loader runs again for each
    object that is evicted and wanted later."""
    n = len(rows) // ROW.size
    view = memoryview(rows)[:n * ROW.size]
    words = view.cast("I")  # x86-64: little-endian, as ROW is
    if words[1::4].tobytes().count(0) != 4 * n:
        return _kernel_rows_per_row(rows)  # a pc beyond 32 bits (never in practice)
    tails = _Tails()
    out = array("I", bytes(KERNEL_ROW.size * n))
    # in chunks: each array call runs in C holding the GIL, and the main thread's drain must
    # not wait for a whole table (~0.5 s for libLLVM's) while the stack maps fill
    for at in range(0, n, KERNEL_ROWS_CHUNK):
        end = min(n, at + KERNEL_ROWS_CHUNK)
        out[2 * at:2 * end:2] = array("I", words[4 * at:4 * end:4].tobytes())
        out[2 * at + 1:2 * end:2] = array("I", map(tails.__getitem__,
                                                    view.cast("Q")[2 * at + 1:2 * end:2]))
    return out.tobytes()


KERNEL_ROWS_CHUNK = 1 << 15  # rows per step of kernel_rows: a few ms each


_TAIL = struct.Struct("<ihBB")  # the last 8 bytes of a ROW
_KERNEL_TAIL = struct.Struct("<HBb")  # the last 4 bytes of a KERNEL_ROW


class _Tails(dict[int, int]):
    """A ROW's last 8 bytes (as a u64) -> a KERNEL_ROW's last 4 (as a u32), computed once."""

    def __missing__(self, tail: int) -> int:
        cfa, rbp, cfa_rule, rbp_rule = _TAIL.unpack(tail.to_bytes(8, "little"))
        got = int.from_bytes(_KERNEL_TAIL.pack(*_kernel_fields(cfa, rbp, cfa_rule, rbp_rule)),
                             "little")
        self[tail] = got
        return got


def _kernel_fields(cfa: int, rbp: int, cfa_rule: int, rbp_rule: int) -> tuple[int, int, int]:
    """(cfa / 8, rules byte, slot) of struct row_t."""
    if cfa < 0 or cfa & 7 or cfa >> 19:
        cfa_rule, cfa = CFA_UNSUPPORTED, 0
    if cfa_rule == CFA_PLT:
        slot = rbp  # the PLT threshold, not an rbp offset
    elif rbp_rule == RBP_AT_CFA and not rbp & 7 and -1024 <= rbp < 1024:
        slot = rbp >> 3
    else:
        rbp_rule = RBP_UNDEFINED if rbp_rule == RBP_AT_CFA else rbp_rule
        slot = 0
    return cfa >> 3, cfa_rule | rbp_rule << 4, slot


def _kernel_rows_per_row(rows: bytes) -> bytes:
    out = bytearray(len(rows) // ROW.size * KERNEL_ROW.size)
    pack = KERNEL_ROW.pack_into
    at = 0
    for pc, cfa, rbp, cfa_rule, rbp_rule in ROW.iter_unpack(rows):
        if pc >> 32:
            cfa_rule, cfa = CFA_UNSUPPORTED, 0
        pack(out, at, pc & 0xFFFFFFFF, *_kernel_fields(cfa, rbp, cfa_rule, rbp_rule))
        at += KERNEL_ROW.size
    return bytes(out)


@dataclass
class UnwindStats:
    objects_loaded: int = 0
    rows_loaded: int = 0
    objects_without_table: int = 0
    objects_over_capacity: int = 0
    objects_evicted: int = 0  # unused objects whose rows or index another object took
    loaded_on_demand: int = 0
    problems: Counter[str] | None = None


def mapping_bias(m: Mapping, facts: ObjectFacts) -> int | None:
    """address - bias = the ELF address: from the PT_LOAD holding the mapping's offset."""
    loads = [LoadSegment(p["offset"], p["vaddr"], p["filesz"], p["memsz"], p["flags"])
             for p in facts.phdrs]
    vaddr = vaddr_of_offset(loads, m.file_offset)
    return None if vaddr is None else m.start - vaddr


# Objects whose code (executable PT_LOAD) is smaller than this get their table when a process
# maps them (libc 1.5 MiB, python3.11 3 MiB: their first samples unwind fully); larger ones
# when a frame first needs it (`wanted` in bpf/profile.c).
EAGER_TEXT_BYTES = 8 << 20
# (object, file offset) -> ELF address of the mapping's start, kept for this many mappings
MAX_VADDRS = 16384


def _eager(facts: ObjectFacts) -> bool:
    text = sum(p["memsz"] for p in facts.phdrs if p["flags"] & 1)
    return text < EAGER_TEXT_BYTES


@dataclass
class _Object:
    index: int
    facts: ObjectFacts
    pid: int  # a process that maps it, to open the file through
    mapping: Mapping
    where: tuple[int, int] | None = None  # (first row, rows) once tried; (0, 0): no table
    users: set[int] = field(default_factory=set)
    # when it last did not fit (time.monotonic()); tried again RETRY_S later, when tables
    # nobody uses may have given way
    over_at: float | None = None
    # no process that maps it could be read (all exited): tried again through the next one
    unreadable_at: float | None = None
    loaded_at: float = 0.0  # time.monotonic() of the load
    last_used: float = 0.0  # when a frame was last seen using the table (0: never)


class KernelTables:
    def __init__(self, program: ProfileProgram, cache: TableCache, capacity_rows: int,
                 proc: str = "/proc") -> None:
        self._program = program
        self._cache = cache
        self.capacity = capacity_rows
        self.proc = proc
        self._objects: dict[str, _Object] = {}
        self._by_index: list[_Object] = []
        self._procs: dict[int, list[tuple[Mapping, _Object | None, int | None]]] = {}
        self._space = RowSpace(capacity_rows)
        # objects no process maps now, the longest unused first: evicted when space is short
        self._idle: OrderedDict[int, _Object] = OrderedDict()
        self._free_indices: list[int] = []
        self._scanned_at = 0.0
        self._vaddrs: dict[tuple[str, int], int | None] = {}  # see _bias
        self.stats = UnwindStats(problems=Counter())
        # Work waiting for the loader: the newest process first. On a busy machine start-up
        # queues every process at once, and the loader needs seconds for them; a process
        # started since (a short-lived one, whose first milliseconds need its tables) goes
        # before the long-running ones queued earlier, which lose little by waiting.
        self._cond = threading.Condition()
        self._pending: dict[int, list[tuple[Mapping, ObjectFacts | None]]] = {}
        self._forgets: list[int] = []
        self._asked = False  # poke() saw a table asked for
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="unwind-tables", daemon=True)
        self._thread.start()

    @property
    def rows_used(self) -> int:
        return self._space.used

    def set_process(self, pid: int, mappings: list[tuple[Mapping, ObjectFacts | None]]) -> None:
        """Queue the process's mappings for the BPF unwinder (the ProcessTracker hook); a
        newer snapshot of a process still queued replaces the older one."""
        with self._cond:
            self._pending.pop(pid, None)
            self._pending[pid] = mappings  # newest last
            self._cond.notify_all()

    def forget(self, pid: int) -> None:
        with self._cond:
            self._pending.pop(pid, None)
            self._forgets.append(pid)
            self._cond.notify_all()

    def summary(self) -> dict[str, int]:
        """Counters for the recording's stats rows and the end-of-run report."""
        s = self.stats
        # rows: in the array now; rows_loaded: copied into it over the run, a table evicted
        # and asked for again counted each time (so it can pass the capacity)
        out = {"objects": s.objects_loaded, "rows": self._space.used,
               "rows_loaded": s.rows_loaded, "rows_capacity": self.capacity,
               "objects_without_table": s.objects_without_table,
               "objects_over_capacity": s.objects_over_capacity,
               "objects_evicted": s.objects_evicted,
               "loaded_on_demand": s.loaded_on_demand}
        assert s.problems is not None
        out.update({f"problem_{k}": v for k, v in sorted(s.problems.items())})
        return out

    def mappings_of(self, pid: int) -> list[tuple[int, int, int, str | None, str | None]] | None:
        """(start, end, bias, build ID, path to open) per mapping of a process whose list the
        kernel has; path None where the kernel has no table for the object (frame pointers).
        Safe from another thread: it reads what the loader replaced whole."""
        entries = self._procs.get(pid)
        if entries is None:
            return None
        out = []
        for m, obj, bias in entries:
            loaded = obj is not None and obj.where is not None and obj.where[1] > 0
            path = f"{self.proc}/{pid}/map_files/{m.map_files_name}" if loaded else None
            out.append((m.start, m.end, bias or 0, obj.facts.build_id if obj else None, path))
        return out

    def wait_idle(self) -> None:
        """Block until every queued process has its tables (tests, benchmarks)."""
        with self._cond:
            while ((self._pending or self._forgets or self._busy or self._asked)
                   and self._thread.is_alive()):
                self._cond.wait(timeout=0.1)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def poke(self) -> None:
        """Wake the loader if the BPF program asked for a table (the main loop calls this at
        each of its wake-ups): a byte 1 at the start of an object's `wanted` word. Every
        eighth byte of the words in use, so the frames' "used" bytes (byte 1) do not count."""
        end = len(self._by_index) * 8
        if end and self._program.wanted[0:end:8].find(b"\x01") >= 0:
            with self._cond:
                self._asked = True
                self._cond.notify_all()

    def _next_work(self) -> Callable[[], None] | None:
        """The next piece of work (forgets first, in order; then the newest process), or
        None after IDLE_WAIT_S (or a poke()) without any. Called with the lock held."""
        if not (self._pending or self._forgets or self._closed or self._asked):
            self._cond.wait(timeout=IDLE_WAIT_S)
        self._asked = False
        if self._forgets:
            return functools.partial(self._forget, self._forgets.pop(0))
        if self._pending:
            pid, mappings = self._pending.popitem()
            return functools.partial(self._load_process, pid, mappings)
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                work = self._next_work()
                # busy until this round's wanted and used scans are done too (wait_idle)
                self._busy = True
            try:
                if work is not None:
                    self._guarded(work)
                self._guarded(self._load_wanted)
                self._guarded(self._scan_used)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # never let a bad object stop the loader
            assert self.stats.problems is not None
            self.stats.problems[f"error: {type(exc).__name__}"] += 1

    def _load_process(self, pid: int, mappings: list[tuple[Mapping, ObjectFacts | None]]
                      ) -> None:
        if pid == os.getpid():
            return  # our own frames (bcc's libLLVM) would cost a million rows: FP is enough
        entries: list[tuple[Mapping, _Object | None, int | None]] = []
        for m, facts in mappings:
            obj, bias = None, None
            if facts is not None and facts.phdrs:
                bias = self._bias(m, facts)
                if bias is not None:
                    obj = self._object(pid, m, facts)
            if obj is not None:
                obj.users.add(pid)
                self._idle.pop(obj.index, None)
                if obj.where is None and _eager(obj.facts) and self._may_try(obj, fresh=True):
                    self._load(obj, (pid, m))
                    if obj.where is not None and obj.over_at is None:
                        for other in obj.users - {pid}:  # it may have failed for them
                            self._write(other)
            entries.append((m, obj, bias))
        self._procs[pid] = entries
        self._write(pid)

    def _bias(self, m: Mapping, facts: ObjectFacts) -> int | None:
        """mapping_bias, by the object and file offset: every snapshot of a process repeats
        its mappings (a Python import adds one to 30), and rebuilding the segments each time
        was a fifth of the loader's time at 10 new Python processes a second."""
        key = (facts.object_id, m.file_offset)
        if key in self._vaddrs:
            vaddr = self._vaddrs[key]
        else:
            if len(self._vaddrs) >= MAX_VADDRS:
                self._vaddrs.clear()
            bias = mapping_bias(m, facts)
            vaddr = self._vaddrs[key] = None if bias is None else m.start - bias
        return None if vaddr is None else m.start - vaddr

    def _object(self, pid: int, m: Mapping, facts: ObjectFacts) -> _Object | None:
        obj = self._objects.get(facts.object_id)
        if obj is None:
            if not self._free_indices and len(self._by_index) >= MAX_OBJECTS and self._idle:
                # every index taken: the longest unused object gives up its own
                _i, old = self._idle.popitem(last=False)
                self._evict(old)
                del self._objects[old.facts.object_id]
                self._free_indices.append(old.index)
            if self._free_indices:
                obj = _Object(self._free_indices.pop(), facts, pid, m)
                self._by_index[obj.index] = obj
            elif len(self._by_index) < MAX_OBJECTS:
                obj = _Object(len(self._by_index), facts, pid, m)
                self._by_index.append(obj)
            else:
                return None
            self._objects[facts.object_id] = obj
        return obj

    def _write(self, pid: int) -> None:
        entries = []
        for m, obj, bias in self._procs.get(pid, []):
            if obj is None or bias is None:
                entries.append(MappingEntry(m.start, m.end, 0))  # JIT: frame pointers only
                continue
            first, count = obj.where or (0, 0)
            entries.append(MappingEntry(m.start, m.end, bias, first, count, obj.index))
        self._program.set_mappings(pid, entries)
        if not self._program.is_seen(pid):
            # It exited before its entry was written: the exit tracepoint has run already (it
            # removes the pid from `seen`, bpf/profile.c), so the kernel's entry goes now. Ours
            # stays (until forget()): its samples' stack copies are unwound with these tables
            # at the next drain (recorder/stack_copies.py). A map lookup, not /proc/PID/stat:
            # that read was ~90 us a snapshot under load.
            self._program.forget_process(pid)

    def _forget(self, pid: int) -> None:
        for _m, obj, _b in self._procs.pop(pid, []):
            if obj is not None:
                obj.users.discard(pid)
                if not obj.users and self._objects.get(obj.facts.object_id) is obj:
                    self._idle[obj.index] = obj
                    self._idle.move_to_end(obj.index)
        self._program.forget_process(pid)

    def _evict(self, obj: _Object) -> None:
        """Take back an unused object's rows. Its users are gone, and with them the kernel's
        mapping entries that point at the rows (forget_process), so no walk reads them."""
        if obj.where is not None and obj.where[1] > 0:
            self._space.free(*obj.where)
        obj.where = None  # loaded again if a process maps it again
        at = obj.index * 8
        self._program.wanted[at:at + 2] = b"\0\0"  # and the BPF program may ask again
        self.stats.objects_evicted += 1

    @staticmethod
    def _may_try(obj: _Object, fresh: bool = False) -> bool:
        """Whether to (re)try loading: not within RETRY_S of not fitting, nor of finding no
        readable process, unless a process that maps it has just come (`fresh`)."""
        now = time.monotonic()
        if obj.over_at is not None and now - obj.over_at < RETRY_S:
            return False
        return fresh or obj.unreadable_at is None or now - obj.unreadable_at >= RETRY_S

    def _scan_used(self) -> None:
        """Which loaded tables frames used since the last scan (byte 1 of `wanted`)."""
        now = time.monotonic()
        if now - self._scanned_at < USE_SCAN_S:
            return
        self._scanned_at = now
        wanted, end = self._program.wanted, len(self._by_index) * 8
        at = wanted.find(b"\x01", 0, end)
        while at >= 0:
            if at % 8 == 1:
                wanted[at] = 0
                self._by_index[at // 8].last_used = now
            at = wanted.find(b"\x01", at + 1, end)

    def _unused_table(self) -> _Object | None:
        """The loaded table to give way: one no process maps (the longest unused first),
        else one no frame used for UNUSED_TABLE_S (the longest unused first)."""
        for o in self._idle.values():
            if o.where is not None and o.where[1] > 0:
                return o
        limit = time.monotonic() - UNUSED_TABLE_S
        stale = [o for o in self._by_index if o.where is not None and o.where[1] > 0
                 and o.loaded_at < limit and o.last_used < limit]
        return min(stale, key=lambda o: (o.last_used, o.loaded_at), default=None)

    def _alloc(self, count: int) -> int | None:
        """Rows for a table, evicting tables nobody uses until an extent is free that holds
        it."""
        while True:
            first = self._space.alloc(count)
            if first is not None:
                return first
            victim = self._unused_table()
            if victim is None:
                return None
            self._evict(victim)
            # The processes that map it lose its rows before another table overwrites them.
            # A walk already past their mapping entry on another CPU may still read a row
            # being rewritten: one sample's frames, microseconds, on a rare event.
            for pid in list(victim.users):
                self._write(pid)

    def _load_wanted(self) -> None:
        """Tables that frames asked for (the BPF program set their `wanted` byte)."""
        wanted = self._program.wanted  # u64 per object: the low byte is 0, 1 or 2
        at = wanted.find(b"\x01")
        while at >= 0:
            index = at // 8
            if at % 8 == 0 and index < len(self._by_index):
                obj = self._by_index[index]
                if obj.where is None and self._may_try(obj):
                    self._load(obj)
                    if obj.where is not None:
                        self.stats.loaded_on_demand += 1
                        for pid in list(obj.users):
                            self._write(pid)
                # answered (the BPF program only sets a 0), unless it did not fit: then the
                # 1 stays, and it is tried again after RETRY_S
                if obj.where is not None:
                    wanted[at] = 2
            at = wanted.find(b"\x01", at + 1)

    def _load(self, obj: _Object, via: tuple[int, Mapping] | None = None) -> None:
        """Load the object's table, opening it through `via` (the process being set up: alive
        now) or the processes that map it."""
        table: UnwindTable | str | None = None
        for pid, m in self._sources(obj, via):
            table = self._table(pid, m, obj.facts)
            if table != "unreadable":
                break  # a table, or a file that opened and has none
        if table == "unreadable":
            # Every process it was seen in has exited (a short-lived one, seen first, is
            # gone before the loader reaches it): the next process that maps it may do.
            if obj.unreadable_at is None:
                self._problem("unreadable")
            obj.unreadable_at = time.monotonic()
            obj.where = None
            return
        obj.unreadable_at = None
        if isinstance(table, str):
            self._problem(table)
            table = None
        if table is None or table.count == 0:
            obj.where = (0, 0)
            self.stats.objects_without_table += 1
        elif table.count > self.capacity * MAX_OBJECT_SHARE:
            obj.where = (0, 0)  # never fits
            self.stats.objects_over_capacity += 1
        elif (first := self._alloc(table.count)) is None:
            obj.where = None  # frame pointers meanwhile; tried again after RETRY_S
            if obj.over_at is None:
                self.stats.objects_over_capacity += 1
            obj.over_at = time.monotonic()
        else:
            if obj.over_at is not None:  # it fits now
                self.stats.objects_over_capacity -= 1
                obj.over_at = None
            obj.where = (first, table.count)
            obj.loaded_at = time.monotonic()
            self._program.write_rows(first, kernel_rows(table.rows))
            self.stats.objects_loaded += 1
            self.stats.rows_loaded += table.count

    def _sources(self, obj: _Object, via: tuple[int, Mapping] | None = None
                 ) -> list[tuple[int, Mapping]]:
        """Processes to open the object through: `via`, where it was first seen, then its
        users (the first may have exited by the time a frame asks for the table)."""
        out = [via] if via is not None else []
        out.append((obj.pid, obj.mapping))
        for pid in list(obj.users)[:4]:
            out.extend((pid, m) for m, o, _b in self._procs.get(pid, []) if o is obj)
        return out

    def _problem(self, reason: str) -> None:
        assert self.stats.problems is not None
        self.stats.problems[reason] += 1

    def _table(self, pid: int, m: Mapping, facts: ObjectFacts) -> UnwindTable | str | None:
        """The table, or why not (a TableProblem's reason; "unreadable": this process's file
        could not be opened), or None (an in-memory object without one)."""
        if facts.data is not None:  # in memory only (the vDSO): build from its bytes
            return self._from_bytes(facts)
        reason = "unreadable"
        for path in (f"{self.proc}/{pid}/map_files/{m.map_files_name}",
                     f"{self.proc}/{pid}/root{m.path.removesuffix(' (deleted)')}"):
            got = self._cache.table_for(path, facts.build_id)
            if isinstance(got, UnwindTable):
                return got
            reason = got.reason
            if reason != "unreadable":
                break  # the file opened: another path to it will not parse better
        return reason

    def _from_bytes(self, facts: ObjectFacts) -> UnwindTable | None:
        assert facts.data is not None
        fd = os.memfd_create("ebpf-record-vdso", os.MFD_CLOEXEC)
        try:
            os.write(fd, facts.data)
            got = self._cache.table_for(fd, facts.build_id)
        finally:
            os.close(fd)
        return got if isinstance(got, UnwindTable) else None

