"""Loading bpf/profile.c with bcc, attaching it, and draining its maps.

bcc is imported here only, so the symbolizer and uploader never need it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorder.bpfmaps import BatchDrainer
from recorder.memory import release_compiler_memory
from recorder.options import RecordOptions, stack_entries_for
from recording.errors import EnvironmentProblem

BPF_SOURCE = Path(os.environ.get("EBPF_PROFILER_BPF_DIR", Path(__file__).resolve().parent.parent
                                  / "bpf")) / "profile.c"

# Indexes of the per-CPU `stats` array in bpf/profile.c.
(STAT_SAMPLES, STAT_USER_STACK_LOST, STAT_KERNEL_STACK_LOST, STAT_COUNTS_FULL,
 STAT_TARGETS_FULL, STAT_SEEN_FULL, STAT_COPIES_LOST) = range(7)
COPY_PAGES = 512  # 2 MiB ring of copied stacks (~140 copies of 14 KiB)
N_STATS = 8
# Event reasons (EV_* in bpf/profile.c).
EV_NEW, EV_EXEC, EV_MMAP = 2, 3, 4
MAX_STACK_DEPTH = 127
MAX_MAPPINGS = 256  # per process, MAX_MAPPINGS in bpf/profile.c

# How a user stack was unwound (UNWINDER_* bits in bpf/profile.c) and why it stopped (STOP_*);
# the names are what the recording stores (docs/recording-format.md).
_UNWINDER_BITS = ((1, "dwarf"), (2, "fp"), (4, "kernel-fp"), (8, "python"))


def _unwinder_name(bits: int) -> str | None:
    return "+".join(name for bit, name in _UNWINDER_BITS if bits & bit) or None


# every combination named once: the drain asks for one per sampled stack
_UNWINDER_NAMES = tuple(_unwinder_name(bits) for bits in range(1 << len(_UNWINDER_BITS)))


def unwinder_name(bits: int) -> str | None:
    """"dwarf", "fp", "dwarf+fp", "dwarf+python", "kernel-fp", ...; None for no stack."""
    return _UNWINDER_NAMES[bits] if 0 <= bits < len(_UNWINDER_NAMES) else _unwinder_name(bits)

STOP_NAMES = ("none", "entry", "fp-end", "depth", "read-fault", "unsupported", "bad-frame",
              "zero-pc")

# struct key_t: tgid, user_unwinder, user_stop, pad, user/kernel stack errors, user/kernel
# stack hashes, comm.
_KEY = struct.Struct("<IBBHiiQQ16s")
_STACK_SIZE = 8 + 8 * MAX_STACK_DEPTH  # struct stack_t
# struct mapping_t: start, end, bias, table_start, table_len, object, pad
MAPPING = struct.Struct("<QQQIIII")
NO_OBJECT = 0xFFFFFFFF
_U64 = (1 << 64) - 1
MAX_OBJECTS = 1 << 16
# struct row_t: pc, cfa_offset / 8, cfa_rule | rbp_rule << 4, rbp_offset / 8 (or PLT threshold)
KERNEL_ROW = struct.Struct("<IHBb")


class _Event(ctypes.Structure):
    _fields_ = [("tgid", ctypes.c_uint32), ("reason", ctypes.c_uint32),
                ("ppid", ctypes.c_uint32), ("uid", ctypes.c_uint32)]


PY_FRESH_MAX = 8


class _FreshCodes(ctypes.Structure):  # struct fresh_t
    _fields_ = [("tgid", ctypes.c_uint32), ("n", ctypes.c_uint32),
                ("code", ctypes.c_uint64 * PY_FRESH_MAX),
                ("checksum", ctypes.c_uint32 * PY_FRESH_MAX)]


@dataclass(slots=True)
class StackCount:
    """One (process, stacks) count of a window. Not frozen: the drain makes one per distinct
    stack every window, and a frozen dataclass's __init__ sets each field through
    object.__setattr__ (3.2 against 1.4 us here)."""

    tgid: int
    comm: str
    user_stack: tuple[int, ...]
    kernel_stack: tuple[int, ...]
    user_stack_error: int | None
    kernel_stack_error: int | None
    count: int
    user_unwinder: str | None = None
    user_stop: str | None = None


@dataclass(frozen=True)
class MappingEntry:
    """One executable mapping as the BPF unwinder sees it (struct mapping_t)."""

    start: int
    end: int
    bias: int  # address - bias = ELF address in the object
    table_start: int = 0
    table_len: int = 0  # 0: no unwind table (yet), frame pointers are used
    object: int = NO_OBJECT  # index in `wanted`: the BPF program asks for its table there


def import_bcc() -> Any:  # bcc has no type information
    try:
        import bcc
    except ImportError:
        raise EnvironmentProblem(
            "bcc's Python binding is missing: install Debian's python3-bpfcc and run from the "
            "project's .venv (`make setup`)"
        ) from None
    return bcc


class ProfileProgram:
    """The loaded BPF program, its double-buffered maps and the unwinder's tables."""

    def __init__(self, opts: RecordOptions, filter_pids: bool, rows_size: int = 1 << 16,
                 procs_size: int = 8192) -> None:
        bcc = import_bcc()
        self._bcc = bcc
        self.dwarf = opts.call_graph == "dwarf"
        self.stack_entries = opts.stack_storage_size or stack_entries_for(
            os.cpu_count() or 1, opts.sample_rate, opts.drain_interval)
        self.rows_size = rows_size
        cflags = [
            f"-I{BPF_SOURCE.parent}",  # bpf/python.h
            f"-DCOUNTS_SIZE={opts.counts_size}",
            f"-DSTACKS_SIZE={self.stack_entries}",
            f"-DFILTER_PIDS={1 if filter_pids else 0}",
            f"-DINCLUDE_IDLE={1 if opts.include_idle else 0}",
            f"-DCALL_GRAPH_DWARF={1 if self.dwarf else 0}",
            f"-DROWS_SIZE={rows_size}",
            f"-DPROCS_SIZE={procs_size}",
            f"-DMAX_OBJECTS={MAX_OBJECTS}",
            f"-DCOPY_PAGES={COPY_PAGES}",
            # TRACEPOINT_PROBE declares its args struct in the parameter list; clang warns.
            "-Wno-visibility",
        ]
        text = BPF_SOURCE.read_text()
        if opts.debug_bpf:
            print(f"// bpf: {BPF_SOURCE} with {' '.join(cflags)}\n{text}", file=sys.stderr)
        try:
            self.bpf = bcc.BPF(text=text, cflags=cflags)
            if self.dwarf:
                unwind = self.bpf.load_func("unwind_user", bcc.BPF.PERF_EVENT)
                self.bpf["progs"][ctypes.c_int(0)] = ctypes.c_int(unwind.fd)
        except Exception as exc:  # bcc raises bare Exception on compile/load failures
            raise EnvironmentProblem(
                f"loading the BPF program failed ({str(exc).splitlines()[0]}); check that the "
                "kernel has BPF and perf events and that kernel headers are installed"
            ) from None
        release_compiler_memory()
        self.active = 0
        self.filter_pids = filter_pids
        self._on_copy: Callable[[bytes], None] | None = None
        lib = bcc.libbcc.lib
        self._counts = [BatchDrainer(lib, self.bpf[f"counts{i}"].map_fd, _KEY.size, 8, 4096)
                        for i in (0, 1)]
        self._stacks = [BatchDrainer(lib, self.bpf[f"stacks{i}"].map_fd, 8, _STACK_SIZE, 1024)
                        for i in (0, 1)]
        # The rows array is BPF_F_MMAPABLE: tables are copied in with one memcpy each, through
        # a mapping of the pages written only (write_rows), as the array (32 MiB by default)
        # mapped whole would stay in the recorder's RSS for the run.
        self._rows_fd = self.bpf["unwind_rows"].map_fd
        self._procs = self.bpf["procs"]
        # one u64 per object: 0 unasked, 1 asked by a frame, 2 answered
        self.wanted = mmap.mmap(self.bpf["wanted"].map_fd, MAX_OBJECTS * 8, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)

    def attach(self, sample_rate: int) -> None:
        bcc = self._bcc
        try:
            self.bpf.attach_perf_event(
                ev_type=bcc.PerfType.SOFTWARE,
                ev_config=bcc.PerfSWConfig.CPU_CLOCK,
                fn_name="on_sample",
                sample_freq=sample_rate,
                cpu=-1,
            )
        except Exception as exc:
            raise EnvironmentProblem(
                f"attaching to the CPU clock perf event failed ({exc}); "
                "is perf_event_paranoid blocking it, or are perf events disabled?"
            ) from None

    def detach(self) -> None:
        bcc = self._bcc
        self.bpf.detach_perf_event(ev_type=bcc.PerfType.SOFTWARE,
                                   ev_config=bcc.PerfSWConfig.CPU_CLOCK)

    def add_targets(self, pids: list[int]) -> None:
        targets = self.bpf["targets"]
        for pid in pids:
            targets[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)

    def open_events(self, on_event: Callable[[int, int, int, int], None]) -> None:
        """on_event(tgid, reason, ppid, uid): ppid is the forking parent for EV_NEW, else 0;
        uid the process's real uid when it was sampled."""
        def handle(_cpu: int, data: int, _size: int) -> None:
            ev = ctypes.cast(data, ctypes.POINTER(_Event)).contents
            on_event(ev.tgid, ev.reason, ev.ppid, ev.uid)

        self.bpf["events"].open_perf_buffer(handle, page_cnt=16)

    def open_pycodes(self, on_codes: Callable[[int, list[tuple[int, int]]], None]) -> None:
        """on_codes(tgid, [(code_addr, checksum)]): code objects a young CPython process ran
        for the first time (bpf/profile.c `pycodes`), to be read while it lives."""
        def handle(_cpu: int, data: int, _size: int) -> None:
            ev = ctypes.cast(data, ctypes.POINTER(_FreshCodes)).contents
            n = min(ev.n, PY_FRESH_MAX)
            on_codes(ev.tgid, [(ev.code[i], ev.checksum[i]) for i in range(n)])

        self.bpf["pycodes"].open_perf_buffer(handle, page_cnt=8)

    def poll_events(self, timeout_ms: int) -> None:
        self.bpf.perf_buffer_poll(timeout=timeout_ms)
        if self._on_copy is not None:
            self.bpf.ring_buffer_consume()

    def open_copies(self, on_copy: Callable[[bytes], None]) -> None:
        """Stack copies of processes without a mapping list in the kernel (bpf/profile.c)."""
        def handle(_ctx: int | None, data: int, size: int) -> None:
            on_copy(ctypes.string_at(data, size))

        self._on_copy = on_copy
        self.bpf["copies"].open_ring_buffer(handle)

    def consume_copies(self) -> None:
        if self._on_copy is not None:
            self.bpf.ring_buffer_consume()

    def mark_unseen(self, tgid: int) -> None:
        """Ask for a new event at the tgid's next sample (its maps were unreadable)."""
        with contextlib.suppress(KeyError):
            del self.bpf["seen"][ctypes.c_uint32(tgid)]

    def is_seen(self, tgid: int) -> bool:
        """Whether the tgid is in `seen`: sched_process_exit removes it (bpf/profile.c), so
        False once the process is gone, and for one forgotten as idle."""
        return ctypes.c_uint32(tgid) in self.bpf["seen"]

    def set_python(self, tgid: int, entry: bytes | None) -> None:
        """The process's `pyprocs` entry (recorder/python/kernel.py), or None to drop it."""
        table = self.bpf["pyprocs"]
        key = ctypes.c_uint32(tgid)
        if entry is None:
            with contextlib.suppress(KeyError):
                del table[key]
            return
        leaf = table.Leaf()
        ctypes.memmove(ctypes.addressof(leaf), entry, min(len(entry), ctypes.sizeof(leaf)))
        table[key] = leaf

    def forget_process(self, tgid: int) -> None:
        """Drop the tgid's mapping list (it exited, or is forgotten as idle)."""
        with contextlib.suppress(KeyError):
            del self._procs[ctypes.c_uint32(tgid)]

    # -- unwinder tables -------------------------------------------------------------------
    def write_rows(self, at: int, rows: bytes) -> None:
        """Copy kernel-form rows (recorder/unwinder.kernel_rows) to [at, at + len / 8)."""
        start = at * KERNEL_ROW.size
        end = start + len(rows)
        if at < 0 or end > self.rows_size * KERNEL_ROW.size:
            raise ValueError("unwind rows outside the array")
        if not rows:
            return
        first = start - start % mmap.PAGESIZE  # array_map_mmap() maps from a page offset
        with mmap.mmap(self._rows_fd, end - first, mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE, offset=first) as window:
            window[start - first:end - first] = rows

    def set_mappings(self, tgid: int, mappings: list[MappingEntry]) -> None:
        """The process's executable mappings, sorted by start, for the BPF unwinder."""
        if len(mappings) > MAX_MAPPINGS:
            # keep the objects with tables (libc, ld.so sit at the highest addresses, so a
            # cut by address would drop exactly them), then the others, by address
            mappings = sorted(mappings, key=lambda m: (m.table_len == 0 and m.object ==
                                                       NO_OBJECT, m.start))[:MAX_MAPPINGS]
        ms = sorted(mappings, key=lambda m: m.start)
        leaf = self._procs.Leaf()
        raw = struct.pack("<II", len(ms), 0) + b"".join(
            # the bias wraps like the BPF program's u64 arithmetic (it may be "negative")
            MAPPING.pack(m.start, m.end, m.bias & _U64, m.table_start, m.table_len, m.object, 0)
            for m in ms)
        ctypes.memmove(ctypes.addressof(leaf), raw, len(raw))
        self._procs[ctypes.c_uint32(tgid)] = leaf

    # -- draining --------------------------------------------------------------------------
    def drain(self) -> list[StackCount]:
        """Flip the active buffer, then read and empty the one that was active."""
        idx = self.active
        self.active = 1 - idx
        self.bpf["control"][ctypes.c_int(0)] = ctypes.c_uint32(self.active)
        # A sample that read the old index before the flip finishes within microseconds
        # (its tail calls included); give it time so its count lands before the copy is read.
        time.sleep(0.002)
        # _KEY's fields, then the count: (tgid, unwinder, stop, pad, uerr, kerr, uhash, khash,
        # comm, count)
        keys: list[tuple[int, int, int, int, int, int, int, int, bytes, int]] = []
        for kraw, _vraw, n in self._counts[idx].drain():
            counts = struct.unpack_from(f"<{n}Q", _vraw)
            for k, c in zip(_KEY.iter_unpack(kraw), counts, strict=True):
                keys.append((*k, c))
        stacks: dict[int, tuple[int, ...]] = {}
        for kraw, vraw, n in self._stacks[idx].drain():
            hashes = struct.unpack_from(f"<{n}Q", kraw)
            words = memoryview(vraw).cast("Q")
            per = _STACK_SIZE // 8
            for i, h in enumerate(hashes):
                base = i * per
                length = min(words[base] & 0xFFFFFFFF, MAX_STACK_DEPTH)
                stacks[h] = tuple(words[base + 1:base + 1 + length])
        out = []
        for (tgid, unwinder, stop, _pad, uerr, kerr, uhash, khash, comm, count) in keys:
            user = stacks.get(uhash, ()) if uhash else ()
            if uhash and not user:
                uerr = -errno.ENOENT  # stored in a copy already drained: lost in the race
            kernel = stacks.get(khash, ()) if khash else ()
            if 0 in kernel:  # bpf_get_stack can leave a zero entry: not a frame
                kernel = tuple(a for a in kernel if a)
            if khash and not kernel:
                kerr = -errno.ENOENT
            out.append(StackCount(
                tgid=tgid, comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
                user_stack=user, kernel_stack=kernel,
                user_stack_error=uerr or None, kernel_stack_error=kerr or None, count=count,
                user_unwinder=unwinder_name(unwinder) if user else None,
                user_stop=STOP_NAMES[stop] if user and stop < len(STOP_NAMES) else None,
            ))
        return out

    def stats(self) -> list[int]:
        table = self.bpf["stats"]
        return [sum(table[ctypes.c_int(i)]) for i in range(N_STATS)]

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self.wanted.close()
        self.bpf.cleanup()

