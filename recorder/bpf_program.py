"""Loading bpf/profile.c with bcc, attaching it, and draining its maps.

bcc is imported here only, so the symbolizer and uploader never need it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recorder.options import RecordOptions
from recording.errors import EnvironmentProblem

BPF_SOURCE = Path(os.environ.get("EBPF_PROFILER_BPF_DIR", Path(__file__).resolve().parent.parent
                                  / "bpf")) / "profile.c"

# Indexes of the per-CPU `stats` array in bpf/profile.c.
STAT_SAMPLES, STAT_USER_STACK_LOST, STAT_KERNEL_STACK_LOST, STAT_COUNTS_FULL = range(4)
# Event reasons (EV_* in bpf/profile.c).
EV_NEW, EV_EXEC, EV_MMAP = 2, 3, 4


class _Event(ctypes.Structure):
    _fields_ = [("tgid", ctypes.c_uint32), ("reason", ctypes.c_uint32)]


@dataclass(frozen=True)
class StackCount:
    tgid: int
    comm: str
    user_stack: tuple[int, ...]
    kernel_stack: tuple[int, ...]
    user_stack_error: int | None
    kernel_stack_error: int | None
    count: int


def import_bcc():
    try:
        import bcc
    except ImportError:
        raise EnvironmentProblem(
            "bcc's Python binding is missing: install Debian's python3-bpfcc and run from the "
            "project's .venv (`make setup`)"
        ) from None
    return bcc


class ProfileProgram:
    """The loaded BPF program and its double-buffered maps."""

    def __init__(self, opts: RecordOptions, filter_pids: bool) -> None:
        bcc = import_bcc()
        self._bcc = bcc
        cflags = [
            f"-DCOUNTS_SIZE={opts.counts_size}",
            f"-DSTACKS_SIZE={opts.stack_storage_size}",
            f"-DFILTER_PIDS={1 if filter_pids else 0}",
            f"-DINCLUDE_IDLE={1 if opts.include_idle else 0}",
            # TRACEPOINT_PROBE declares its args struct in the parameter list; clang warns.
            "-Wno-visibility",
        ]
        text = BPF_SOURCE.read_text()
        if opts.debug_bpf:
            print(f"// bpf: {BPF_SOURCE} with {' '.join(cflags)}\n{text}", file=sys.stderr)
        try:
            self.bpf = bcc.BPF(text=text, cflags=cflags)
        except Exception as exc:  # bcc raises bare Exception on compile/load failures
            raise EnvironmentProblem(
                f"loading the BPF program failed ({str(exc).splitlines()[0]}); check that the "
                "kernel has BPF and perf events and that kernel headers are installed"
            ) from None
        self.active = 0
        self.filter_pids = filter_pids

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

    def open_events(self, on_event: Callable[[int, int], None]) -> None:
        def handle(_cpu, data, _size):
            ev = ctypes.cast(data, ctypes.POINTER(_Event)).contents
            on_event(ev.tgid, ev.reason)

        self.bpf["events"].open_perf_buffer(handle, page_cnt=16)

    def poll_events(self, timeout_ms: int) -> None:
        self.bpf.perf_buffer_poll(timeout=timeout_ms)

    def mark_unseen(self, tgid: int) -> None:
        """Ask for a new event at the tgid's next sample (its maps were unreadable)."""
        with contextlib.suppress(KeyError):
            del self.bpf["seen"][ctypes.c_uint32(tgid)]

    def drain(self) -> list[StackCount]:
        """Flip the active buffer, then read and clear the one that was active."""
        idx = self.active
        self.active = 1 - idx
        self.bpf["control"][ctypes.c_int(0)] = ctypes.c_uint32(self.active)
        counts = self.bpf[f"counts{idx}"]
        stacks = self.bpf[f"stacks{idx}"]
        items = _take_all(counts)
        cache: dict[int, tuple[int, ...]] = {}

        def stack(sid: int) -> tuple[int, ...]:
            if sid < 0:
                return ()
            got = cache.get(sid)
            if got is None:
                try:
                    got = tuple(stacks.walk(sid))
                except KeyError:
                    got = ()
                cache[sid] = got
            return got

        out = []
        for k, v in items:
            us, ks = k.user_stack_id, k.kernel_stack_id
            out.append(
                StackCount(
                    tgid=k.tgid,
                    comm=k.comm.decode("utf-8", "replace"),
                    user_stack=stack(us),
                    kernel_stack=stack(ks),
                    user_stack_error=us if us < 0 else None,
                    kernel_stack_error=ks if ks < 0 else None,
                    count=v if isinstance(v, int) else v.value,
                )
            )
        stacks.clear()
        return out

    def stats(self) -> list[int]:
        table = self.bpf["stats"]
        return [sum(table[ctypes.c_int(i)]) for i in range(4)]

    def close(self) -> None:
        self.bpf.cleanup()


def _take_all(table) -> list:
    """Read and delete every entry; in batches where the kernel supports it (5.6+)."""
    try:
        return list(table.items_lookup_and_delete_batch())
    except Exception:
        items = list(table.items())
        table.clear()
        return items
