"""One recording run: load BPF, drain it every interval, snapshot processes, write rows."""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType

from cli_common.command import is_terminal
from recorder import kheaders, memory
from recorder.bpf_program import (
    EV_MMAP,
    STAT_COUNTS_FULL,
    ProfileProgram,
    StackCount,
)
from recorder.kernel import KernelSymbols, kernel_build_id, module_rows, read_vdso
from recorder.mmap_events import MmapTracker
from recorder.objects import ObjectFacts, ObjectRegistry
from recorder.options import RecordOptions
from recorder.procfs import Mapping, all_pids, descendants, is_running
from recorder.python.frames import PythonFrames
from recorder.snapshots import ProcessTracker, SnapshotHook
from recorder.stack_copies import MEMO_BYTES, CopyUnwinder, parse_copy
from recorder.targets import GatedCommand, Target
from recorder.unwinder import KernelTables, estimate_rows, table_capacity
from recording.errors import EnvironmentProblem, OutputError
from recording.pyframes import native_entries
from recording.schema import SCHEMA_VERSION, Row
from recording.writer import RecordingWriter, open_writer
from unwind.cache import TableCache

RECORDER_VERSION = "0.1.0"
# A process not sampled for this long is forgotten (see ProcessTracker.forget_idle).
IDLE_FORGET_SECONDS = 60.0
# How often malloc's free pages go back to the kernel (recorder/memory.py); a trim costs
# ~1 ms, and a window's transient buffers are freed by then.
TRIM_SECONDS = 10.0


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Summary:
    samples: int = 0
    lost_user_stacks: int = 0
    lost_kernel_stacks: int = 0
    dropped_counts_full: int = 0
    targets_full: int = 0
    without_mapping: int = 0  # samples whose user leaf no recorded mapping covers
    mmap_records_lost: int = 0
    copies_lost: int = 0  # stack copies the ring had no room for (frame pointers instead)
    stack_entries: int = 0
    unwind: dict[str, int] = field(default_factory=dict)  # KernelTables.summary()
    seen_full: int = 0
    # samples per user-stack unwinder ("dwarf", "fp", "dwarf+fp", "kernel-fp"; None: no stack)
    unwinders: Counter[str | None] = field(default_factory=Counter)
    processes: int = 0
    objects: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    cpu_total: float = 0.0
    cpu_steady: float = 0.0
    exit_code: int = 0
    output_closed: bool = False
    notes: list[str] = field(default_factory=list)


def check_environment() -> str | None:
    """Root, bcc and kernel headers; returns the headers note to print, if any."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("ebpf-record needs root for BPF and perf events; run it with sudo")
    from recorder.bpf_program import import_bcc

    import_bcc()
    notes = [kheaders.ensure_kernel_headers(quiet=True), kheaders.ensure_tracefs()]
    return "; ".join(n for n in notes if n) or None


class Recorder:
    def __init__(self, opts: RecordOptions, target: Target) -> None:
        self.opts = opts
        self.target = target
        self.stop_reason: str | None = None
        self.progress = is_terminal() if opts.progress is None else opts.progress
        self.child: GatedCommand | None = None
        self.pending: set[int] = set()  # read their maps now
        # read their maps at the next drain; with the BPF unwinder, at once (frames in a
        # library dlopen'ed since the last snapshot have no table until it is read)
        self.dirty: set[int] = set()
        self.forked_from: dict[int, int] = {}  # new pid -> the parent it forked from
        # pids whose only event since their last snapshot was EV_MMAP: the kernel's mmap
        # records extend that snapshot, no /proc read (a Python process's imports)
        self.mapped: set[int] = set()
        self.event_uids: dict[int, int] = {}  # pid -> its uid when the event was sent
        self.mmaps: MmapTracker | None = None
        self.tables: KernelTables | None = None
        self.copies: CopyUnwinder | None = None
        self.python: PythonFrames | None = None
        # `pycode` rows read before the drain, written with the next window: of stack copies'
        # Python frames as each copy arrives, of the code objects a young process's samples
        # met first as the BPF program sends them (a short-lived process may be gone by the
        # drain)
        self.early_rows: list[Row] = []

    def _on_event(self, tgid: int, reason: int, ppid: int = 0, uid: int | None = None) -> None:
        if ppid:
            self.forked_from[tgid] = ppid
        if uid is not None:
            self.event_uids[tgid] = uid
        if reason == EV_MMAP:
            if tgid not in self.pending and tgid not in self.dirty:
                self.mapped.add(tgid)
        else:
            self.mapped.discard(tgid)  # a new process or an exec: read it whole
        batch = reason == EV_MMAP and self.opts.call_graph != "dwarf"
        (self.dirty if batch else self.pending).add(tgid)

    # -- signals -------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_reason = signal.Signals(signum).name
        if self.child is not None and not _child_got_terminal_signal(signum):
            self.child.forward(signum)

    def run(self) -> Summary:
        opts = self.opts
        headers_note = check_environment()
        memory.tune_malloc()  # before the compile: its large blocks go back when freed
        cpu0 = cpu_seconds()
        t0 = time.monotonic()
        summary = Summary()
        if headers_note:
            summary.notes.append(headers_note)
            print(f"ebpf-record: {headers_note}", file=sys.stderr)
        rows = self._unwind_rows() if opts.call_graph == "dwarf" else 1
        program = ProfileProgram(opts, filter_pids=self.target.mode != "system", rows_size=rows)
        summary.stack_entries = program.stack_entries
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT,
                                                                       signal.SIGTERM)}
        writer: RecordingWriter | None = None
        try:
            # Created after the BPF compile: Ctrl-C during it leaves no file behind.
            writer = open_writer(opts.out)
            ksyms = KernelSymbols.load()
            vdso = read_vdso()
            # One cache for the table loader and the stack copies, so a table both need is
            # read or built once (an object without a build ID has no disk cache); bounded
            # by MEMO_BYTES (each object's table goes to the kernel once, the copies keep
            # asking for the same few: libc, ld.so, the interpreters).
            cache = TableCache(max_bytes=MEMO_BYTES)
            tables = KernelTables(program, cache, rows) if program.dwarf else None
            self.tables = tables
            self.mmaps = self._open_mmap_tracking(summary)
            tracker = ProcessTracker(ObjectRegistry(), vdso,
                                     on_snapshot=self._snapshot_hook(program),
                                     mmaps=self.mmaps)
            writer.write_rows(self._meta_rows(headers_note))
            writer.write_rows(module_rows())
            if opts.all_kallsyms:
                writer.write_rows(ksyms.all_rows())
            program.open_events(self._on_event)
            if tables is not None:
                self.copies = CopyUnwinder(tables, cache)
                program.open_copies(self._on_copy)
            if self.python is not None:
                program.open_pycodes(self._on_pycodes)
            if self.target.mode == "pid":
                # Children that exist already; the fork tracepoint adds later ones.
                roots = set(self.target.pids)
                program.add_targets(sorted(roots | descendants(roots)))
            if self.target.mode == "command":
                self.child = GatedCommand(self.target.command, self.target.run_as)
            try:
                if self.child is not None:
                    program.add_targets([self.child.pid])
                program.attach(opts.sample_rate)
            except BaseException:
                if self.child is not None:
                    self.child.abort()  # never let the command run unprofiled
                    self.child = None
                raise
            if self.child is not None:
                self.child.release()
            print(f"ebpf-record: sampling {self._describe()} at {opts.sample_rate} Hz "
                  f"on every CPU; {self._how_it_ends()}", file=sys.stderr, flush=True)
            cpu_start = cpu_seconds()
            try:
                self._loop(program, tracker, ksyms, writer, summary)
            except BrokenPipeError:
                summary.output_closed = True
            if tables is not None:
                tables.close()
                summary.unwind = tables.summary()
            if self.mmaps is not None:
                summary.mmap_records_lost = self.mmaps.lost
                self.mmaps.close()
            stats = program.stats()
            program.close()
            (summary.samples, summary.lost_user_stacks, summary.lost_kernel_stacks,
             summary.dropped_counts_full, summary.targets_full, summary.seen_full,
             summary.copies_lost) = stats[:7]
            summary.processes = len(tracker)
            summary.objects = len(tracker.objects)
            summary.seconds = time.monotonic() - t0
            summary.cpu_total = cpu_seconds() - cpu0
            summary.cpu_steady = cpu_seconds() - cpu_start
            if not summary.output_closed:
                try:
                    writer.write_rows(tracker.final_perfmap_rows())
                    writer.write_rows(self._stats_rows(summary))
                    writer.close()
                except BrokenPipeError:
                    summary.output_closed = True
            summary.bytes_written = writer.bytes_written
        except BaseException as exc:
            note = self._abort(writer, said=str(exc) if isinstance(exc, OutputError) else "")
            if note and isinstance(exc, OutputError):
                raise OutputError(f"{exc}; {note}") from None
            if note:
                print(f"ebpf-record: {note}", file=sys.stderr)
            raise
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        if summary.output_closed:
            _silence_stdout()
            print("ebpf-record: the reader of --out - went away (the next command in the pipe "
                  "exited); stopped recording" + (", waiting for the command to exit"
                                                 if self.child else ""), file=sys.stderr)
        if self.child is not None:
            summary.exit_code = self.child.wait()
        elif summary.output_closed:
            summary.exit_code = 141  # as if killed by SIGPIPE, which pipefail reports
        return summary

    def _abort(self, writer: RecordingWriter | None, said: str) -> str | None:
        """The run failed (disk full, a crash, Ctrl-C before sampling): stop the command, keep
        completed windows for --recover, remove the rest. Returns what was done, for the error
        line (`said`: what the error says already)."""
        notes = []
        if self.child is not None:
            notes.append(self.child.stop())
        kept = writer.abort() if writer is not None else None
        if self.opts.out == "-":
            _silence_stdout()  # else interpreter shutdown fails flushing what stdout refused
        elif kept and kept not in said:
            notes.append(f"the completed windows are kept in {kept} (`ebpf-record --recover "
                         f"{kept}`)")
        return "; ".join(n for n in notes if n) or None

    def _loop(self, program: ProfileProgram, tracker: ProcessTracker, ksyms: KernelSymbols,
              writer: RecordingWriter, summary: Summary) -> None:
        interval = self.opts.drain_interval
        start = time.time()
        deadline = start + self.opts.duration if self.opts.duration else None
        window_start_ns = time.time_ns()
        # Align drains to multiples of the interval so windows nest in Pyroscope's 10 s ones.
        next_drain = (int(start / interval) + 1) * interval
        pending_rows: list[Row] = []
        total = 0
        next_forget = start + IDLE_FORGET_SECONDS
        next_trim = start + TRIM_SECONDS
        lost_before = 0
        while True:
            now = time.time()
            wait = min(next_drain, deadline or next_drain) - now
            if wait > 0 and self.stop_reason is None:
                program.poll_events(int(min(wait, 0.2) * 1000) + 1)
            if self.tables is not None:
                self.tables.poke()  # a table the BPF program asked for (the loader sleeps)
            pending_rows.extend(self._observe_pending(tracker))
            finished = self._finished(deadline)
            now = time.time()
            if now >= next_drain or finished:
                if finished:
                    program.detach()  # the last drain then sees every sample taken
                window_end_ns = time.time_ns()
                self.pending |= self.dirty
                self.dirty.clear()
                pending_rows.extend(self._observe_pending(tracker))
                counts = program.drain()
                if self.copies is not None:
                    program.consume_copies()
                    if finished and self.tables is not None:
                        self.tables.wait_idle()  # the last copies' processes get their tables
                    counts.extend(self.copies.drain(final=finished))
                # The events those samples sent (a new process, an exec, an executable mmap)
                # are read before their rows: a stream reader symbolizes each window as it
                # comes, so the mappings and perf-map lines it needs must come first.
                program.poll_events(0)
                self.pending |= self.dirty
                self.dirty.clear()
                pending_rows.extend(self._observe_pending(tracker))
                lost_now = program.stats()[STAT_COUNTS_FULL]
                rows = self._window_rows(counts, tracker, ksyms, window_start_ns, window_end_ns,
                                         lost_now - lost_before, summary)
                lost_before = lost_now
                writer.write_rows(pending_rows + self.early_rows + rows)
                writer.end_window()
                pending_rows = []
                self.early_rows = []
                total += sum(c.count for c in counts)
                window_start_ns = window_end_ns
                next_drain = (int(now / interval) + 1) * interval
                if now >= next_forget:
                    for pid in tracker.forget_idle(now, IDLE_FORGET_SECONDS):
                        program.mark_unseen(pid)  # its next sample sends a new event
                        if self.tables is not None:
                            self.tables.forget(pid)  # and a new mapping list
                        if self.python is not None:
                            self.python.forget(pid)
                    next_forget = now + IDLE_FORGET_SECONDS
                if now >= next_trim:
                    memory.trim()
                    next_trim = now + TRIM_SECONDS
                if self.progress:
                    # (file size is not shown: Parquet row groups are written every 50k rows)
                    print(f"\rebpf-record: {now - start:6.1f} s  {total:>9,} samples  "
                          f"{len(tracker):>5} processes  {len(tracker.objects):>5} objects",
                          end="", file=sys.stderr, flush=True)
            if finished:
                if self.progress:
                    print(file=sys.stderr)
                return

    def _unwind_rows(self) -> int:
        """The kernel's unwind row array, sized from the objects the targets map now."""
        ceiling = self.opts.unwind_table_rows
        if self.target.mode == "command":
            return table_capacity(ceiling // 4, ceiling)  # what it will map is unknown yet
        if self.target.mode == "pid":
            pids: Iterable[int] = set(self.target.pids) | descendants(set(self.target.pids))
        else:
            pids = all_pids()
        estimate, _ = estimate_rows(pids)
        return table_capacity(estimate, ceiling)

    def _describe(self) -> str:
        if self.target.mode == "command":
            return f"{self.target.command[0]} (pid {self.child.pid if self.child else '?'}) " \
                "and its children"
        if self.target.mode == "pid":
            return "pid " + ", ".join(map(str, self.target.pids)) + " and their children"
        return "the whole system"

    def _how_it_ends(self) -> str:
        ends = []
        if self.opts.duration:
            ends.append(f"stops after {self.opts.duration:g} s")
        if self.target.mode != "system":
            ends.append("stops when the target exits")
        return ", ".join([*ends, "Ctrl-C to stop"])

    def _snapshot_hook(self, program: ProfileProgram) -> SnapshotHook | None:
        """What a new process snapshot feeds: the unwinder's tables, the Python walker."""
        tables = self.tables
        if self.opts.python and program.dwarf:
            # eager for two windows: a process that exits within them has no drain after
            # its samples while it lives
            self.python = PythonFrames(program.set_python,
                                       eager_seconds=2 * self.opts.drain_interval)
        python = self.python
        if tables is None:
            return None

        def hook(pid: int, mappings: list[tuple[Mapping, ObjectFacts | None]],
                 added: bool) -> None:
            tables.set_process(pid, mappings)
            if python is not None:
                python.on_snapshot(pid, [m for m, _f in mappings], added,
                                   {m.path: f for m, f in mappings if f is not None},
                                   self.event_uids.get(pid))

        return hook

    def _on_copy(self, raw: bytes) -> None:
        copy = parse_copy(raw)
        if copy is not None and self.copies is not None:
            self.copies.add(copy)
            if copy.python and self.python is not None:
                self.early_rows += self.python.rows([(copy.tgid, copy.python_pairs())],
                                                   time.time_ns())

    def _on_pycodes(self, tgid: int, keys: list[tuple[int, int]]) -> None:
        if self.python is not None:
            self.early_rows += self.python.read_now(tgid, keys, time.time_ns())

    def _open_mmap_tracking(self, summary: Summary) -> MmapTracker | None:
        try:
            return MmapTracker()
        except OSError as exc:
            note = (f"no mmap tracking ({exc.strerror}): processes that exit within "
                    "milliseconds may lack mappings")
            summary.notes.append(note)
            print(f"ebpf-record: {note}", file=sys.stderr)
            return None

    def _observe_pending(self, tracker: ProcessTracker) -> list[Row]:
        if self.mmaps is not None:
            self.mmaps.poll()  # the kernel's mmap records first: for processes already gone
        rows: list[Row] = []
        while self.pending:
            pid = self.pending.pop()
            uid = self.event_uids.get(pid)
            if uid is not None:
                tracker.perfmaps.note_uid(pid, uid)
            mapped = pid in self.mapped
            self.mapped.discard(pid)
            # the snapshot hook reads the uid too (whose interpreter file data it may share)
            rows.extend(tracker.observe(pid, self.forked_from.pop(pid, None), mapped=mapped))
            self.event_uids.pop(pid, None)
        return rows

    def _finished(self, deadline: float | None) -> bool:
        if self.stop_reason is not None:
            return True
        if deadline is not None and time.time() >= deadline:
            self.stop_reason = "duration"
            return True
        if self.child is not None and self.child.poll() is not None:
            self.stop_reason = "command exited"
            return True
        if self.target.mode == "pid" and not any(is_running(p) for p in self.target.pids):
            self.stop_reason = "target processes exited"
            return True
        return False

    def _window_rows(self, counts: list[StackCount], tracker: ProcessTracker,
                     ksyms: KernelSymbols, start_ns: int, end_ns: int, lost: int,
                     summary: Summary) -> list[Row]:
        rows: list[Row] = []
        kaddrs: set[int] = set()
        now = time.time()
        for c in counts:
            if c.tgid not in tracker.known:  # its event was lost or not yet handled
                rows.extend(tracker.observe(c.tgid, self.forked_from.pop(c.tgid, None)))
            tracker.sampled(c.tgid, now)
            kaddrs.update(c.kernel_stack)
        rows.extend(ksyms.rows_for(kaddrs))
        total = 0
        # JIT code named since the last read, before the samples that need it (a stream
        # reader symbolizes each window as it arrives)
        rows.extend(tracker.perfmap_rows_for({c.tgid for c in counts}))
        if self.python is not None:  # names of the code objects the Python frames point at
            rows.extend(self.python.rows(((c.tgid, list(c.user_stack)) for c in counts),
                                         time.time_ns()))
        unwinders = summary.unwinders
        for c in counts:
            total += c.count
            unwinders[c.user_unwinder] += c.count
            # the leaf's native entry: a Python frame's pair may come first (a sample in
            # _PyEval_EvalFrameDefault itself), and its tagged code address is in no mapping
            leaf = next(native_entries(c.user_stack), None)
            if leaf is not None and not tracker.covers(c.tgid, leaf[0]):
                summary.without_mapping += c.count
            rows.append({
                "record": "sample", "window_start_ns": start_ns, "window_end_ns": end_ns,
                "pid": c.tgid, "comm": c.comm, "count": c.count,
                "user_stack": list(c.user_stack), "kernel_stack": list(c.kernel_stack),
                "user_stack_error": c.user_stack_error,
                "kernel_stack_error": c.kernel_stack_error,
                "user_unwinder": c.user_unwinder, "user_stop": c.user_stop,
            })
        rows.append({"record": "window", "window_start_ns": start_ns, "window_end_ns": end_ns,
                     "count": total, "lost_samples": lost})
        return rows

    def _meta_rows(self, headers_note: str | None) -> list[Row]:
        meta = {
            "schema_version": str(SCHEMA_VERSION),
            "recorder_version": RECORDER_VERSION,
            "hostname": socket.gethostname(),
            "kernel_release": platform.release(),
            "kernel_build_id": kernel_build_id(),
            "sample_rate_hz": str(self.opts.sample_rate),
            "drain_interval_s": str(self.opts.drain_interval),
            "target": json.dumps(self.target.describe()),
            "started_ns": str(time.time_ns()),
            "kallsyms": "all" if self.opts.all_kallsyms else "needed",
            "headers_note": headers_note,
        }
        return [{"record": "meta", "key": k, "value": v} for k, v in meta.items()
                if v is not None]

    def _stats_rows(self, s: Summary) -> list[Row]:
        stats = {
            "samples": s.samples, "lost_user_stacks": s.lost_user_stacks,
            "lost_kernel_stacks": s.lost_kernel_stacks,
            "dropped_samples_counts_full": s.dropped_counts_full,
            "targets_full": s.targets_full, "seen_full": s.seen_full,
            "samples_without_mapping": s.without_mapping,
            "mmap_records_lost": s.mmap_records_lost, "stack_copies_lost": s.copies_lost,
            "call_graph": self.opts.call_graph,
            **{f"unwind_{k}": v for k, v in s.unwind.items()},
            **{f"samples_unwound_{k}": v for k, v in sorted(_named(s.unwinders))},
            "processes": s.processes,
            "objects": s.objects, "ended_ns": time.time_ns(),
            "recorder_cpu_s": round(s.cpu_total, 3), "stop_reason": self.stop_reason,
        }
        return [{"record": "stats", "key": k, "value": str(v)} for k, v in stats.items()]


def _named(counts: Counter[str | None]) -> list[tuple[str, int]]:
    return [(k, v) for k, v in counts.items() if k is not None]


def _silence_stdout() -> None:
    """Point stdout at /dev/null so interpreter shutdown does not fail flushing a dead pipe."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except OSError:
        pass


def _child_got_terminal_signal(signum: int) -> bool:
    """Ctrl-C on a terminal reaches the whole foreground process group, child included:
    forwarding it again would deliver it twice."""
    if signum != signal.SIGINT:
        return False
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:  # stdin is not a terminal, or closed
        return False
