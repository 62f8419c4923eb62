"""Helpers for testing names against perf (no tests here): the same samples, named by both.

`perf record` a command, read `perf script` (each user frame's address and perf's name for
it, and the processes' executable mmaps), and write the same samples as a recording: mappings
from the MMAP2 events, objects from the files, one sample per perf sample with the very
addresses perf named. Symbolizing that recording and comparing frame by frame is a
differential test on identical input, as pyelftools diffs its readelf against GNU readelf.

perf prints a user frame's address relative to its object (the file offset, which is the ELF
address for the usual layout, or the absolute address for ET_EXEC). With `-g` (the kernel's
frame-pointer walk) every address is as the hardware saw it: the leaf's pc, then return
addresses, which perf looks up as they are.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from profiles.model import FrameKind, Profile
from recording.elf import elf_info_of_path
from recording.schema import SCHEMA, rows_to_batch
from symbolizer.engine import Engine
from symbolizer.options import SymbolizeOptions

T0 = 1_764_057_600_000_000_000
_MMAP2 = re.compile(r"PERF_RECORD_MMAP2 (\d+)/\d+: \[0x([0-9a-f]+)\(0x([0-9a-f]+)\) @ "
                    r"(0x[0-9a-f]+|0) [^\]]*\]: (\S+) (.*)$")
_FRAME = re.compile(r"^\s+([0-9a-f]+) (.*) \((.*)\)$")


def perf_unavailable_reason() -> str | None:
    if shutil.which("perf") is None:
        return "perf is not installed (Debian linux-perf)"
    if os.geteuid() != 0:
        return "perf record of every sample needs root here"
    return None


@dataclass
class PerfSample:
    pid: int
    comm: str
    frames: list[tuple[int, str, str]]  # (address as printed, perf's name, object), leaf first


@dataclass
class PerfRun:
    samples: list[PerfSample] = field(default_factory=list)
    # pid -> [(start, length, file offset, path)] of executable mappings
    mmaps: dict[int, list[tuple[int, int, int, str]]] = field(default_factory=dict)


def perf_env() -> dict[str, str]:
    """perf's environment without a debuginfod server: perf must name what the local files
    say, as the symbolizer does."""
    return {k: v for k, v in os.environ.items() if k != "DEBUGINFOD_URLS"}


def perf_record(cmd: list[str], data: Path, *, call_graph: str = "fp", freq: int = 999,
                cwd: Path | None = None) -> Path:
    # -N: perf must read the very files the symbolizer reads, not copies in ~/.debug; -B: no
    # build IDs collected at the end, where perf 6.1 aborts (build-id.c:1010) on MMAP2
    # records another consumer flagged (clear_leaked_build_id_flags)
    r = subprocess.run(["perf", "record", "-N", "-B", "-q", "-F", str(freq), "--call-graph",
                        call_graph, "-o", str(data), "--", *cmd], cwd=cwd, env=perf_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise AssertionError(f"perf record exited {r.returncode}: {r.stderr[-2000:]}")
    clear_leaked_build_id_flags(data)
    return data


def perf_script(data: Path) -> PerfRun:
    # --no-inline: the symbol's name, not the DWARF name of code inlined there
    out = subprocess.run(["perf", "script", "-i", str(data), "--show-mmap-events", "--no-inline",
                          "-F", "comm,pid,ip,sym,dso"], capture_output=True, text=True,
                         check=True, env=perf_env()).stdout
    run = PerfRun()
    cur: PerfSample | None = None
    for line in out.splitlines():
        if not line.strip():
            cur = None
            continue
        m = _MMAP2.search(line)
        if m:
            pid, start, length, pgoff, perms, path = m.groups()
            if "x" in perms:
                run.mmaps.setdefault(int(pid), []).append(
                    (int(start, 16), int(length, 16), int(pgoff, 16), path.strip()))
            continue
        f = _FRAME.match(line)
        if f and cur is not None:
            if not f.group(3).startswith("[kernel"):
                cur.frames.append((int(f.group(1), 16), f.group(2), f.group(3)))
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[-1].isdigit() and not line.startswith("\t"):
            cur = PerfSample(int(parts[-1]), " ".join(parts[:-1]), [])
            run.samples.append(cur)
    run.samples = [s for s in run.samples if s.frames]
    return run


def _absolute(run: PerfRun, pid: int, printed: int, path: str, exec_type: bool) -> int | None:
    for start, length, pgoff, p in run.mmaps.get(pid, []):
        if p != path:
            continue
        addr = printed if exec_type else start + printed - pgoff
        if start <= addr < start + length:
            return addr
    return None


def recording_from_perf(run: PerfRun, out: Path, unwinder: str = "kernel-fp"
                        ) -> tuple[Path, dict[tuple[str, int], set[str]]]:
    """The recording, and perf's names by (comm, absolute address) for the frames perf named
    in files (not [vdso], [unknown] or anonymous memory)."""
    rows: list[dict] = [{"record": "meta", "key": "sample_rate_hz", "value": "999"},
                        {"record": "meta", "key": "started_ns", "value": str(T0)}]
    ids: dict[str, str] = {}
    exec_type: dict[str, bool] = {}
    for pid, maps in run.mmaps.items():
        rows.append({"record": "process", "pid": pid, "maps_seq": 0, "time_ns": T0})
        for start, length, pgoff, path in maps:
            if path.startswith("/") and path not in ids and os.path.exists(path):
                info = elf_info_of_path(path)
                ids[path] = info.build_id or path
                exec_type[path] = info.elf_type == "EXEC"
                rows.append({"record": "object", "object_id": ids[path], "path": path,
                             "build_id": info.build_id, "elf_type": info.elf_type,
                             "phdrs": [{"offset": s.offset, "vaddr": s.vaddr,
                                        "filesz": s.filesz, "memsz": s.memsz,
                                        "flags": s.flags} for s in info.loads]})
            rows.append({"record": "mapping", "pid": pid, "maps_seq": 0, "start": start,
                         "end": start + length, "file_offset": pgoff, "path": path,
                         "perms": "r-xp", "object_id": ids.get(path)})
    expected: dict[tuple[str, int], set[str]] = defaultdict(set)
    for s in run.samples:
        stack = []
        for printed, name, dso in s.frames:
            addr = _absolute(run, s.pid, printed, dso, exec_type.get(dso, False)) \
                if dso in ids else None
            stack.append(addr if addr is not None else 1)  # 1: unmapped, never compared
            if addr is not None and name != "[unknown]":
                expected[(s.comm, addr)].add(name)
        rows.append({"record": "sample", "window_start_ns": T0, "window_end_ns": T0 + 10**9,
                     "pid": s.pid, "comm": s.comm, "count": 1, "user_stack": stack,
                     "kernel_stack": [], "kernel_stack_error": -14,
                     "user_unwinder": unwinder})
    rows.append({"record": "window", "window_start_ns": T0, "window_end_ns": T0 + 10**9,
                 "count": len(run.samples)})
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA),
                   out)
    return out, dict(expected)


def symbolized(recording: Path, options: SymbolizeOptions | None = None) -> list[Profile]:
    from recording.reader import iter_batches
    from symbolizer.resolve import load_lines_fn

    options = options or SymbolizeOptions(cache_dir=None)
    engine = Engine(options, load_lines_fn() if options.lines else None)
    batches = list(iter_batches(str(recording)))
    for b in batches:
        engine.feed_metadata(b)
    profiles = [p for b in batches for w in engine.feed(b, metadata=False) for p in w]
    return profiles + [p for w in engine.finish() for p in w]


def our_names(recording: Path, options: SymbolizeOptions | None = None
              ) -> dict[tuple[str, int], set[str]]:
    """Our names by (comm, absolute address), symbolizing `recording` as ebpf-symbolize
    does; each stack's root frame is the comm. With --lines, the functions themselves (not
    the inlined frames, which perf --no-inline does not print)."""
    got: dict[tuple[str, int], set[str]] = defaultdict(set)
    for p in symbolized(recording, options):
        for stack in p.stacks:
            for f in stack[1:]:
                if f.kind in (FrameKind.USER, FrameKind.VDSO) and f.address and not f.inlined:
                    got[(stack[0].name, f.address)].add(f.name)
    return dict(got)


def differences(expected: dict[tuple[str, int], set[str]],
                got: dict[tuple[str, int], set[str]]) -> list[str]:
    """Frames perf named and we named otherwise (or not at all)."""
    out = []
    for key, names in sorted(expected.items()):
        ours = got.get(key, set())
        if not names & ours:
            out.append(f"{key[1]:#x}: perf {sorted(names)}, ours {sorted(ours)}")
    return out



_PERF_RECORD_MMAP2 = 10
_MISC_MMAP_BUILD_ID = 1 << 14


def clear_leaked_build_id_flags(data: Path) -> int:
    """Clear PERF_RECORD_MISC_MMAP_BUILD_ID on perf.data's MMAP2 records; how many had it.

    `perf record` without --buildid-mmap does not ask for build IDs, so its MMAP2 records
    hold device and inode; the flag on one was left by another consumer of the same mmap
    that did ask (kernel/events/core.c, perf_event_mmap_output sets it in the shared record
    and never clears it), and perf 6.1 then reads device and inode as a build ID and aborts.
    Another profiler on the machine (an older ebpf-record among them) must not fail a test.
    Layout: tools/perf/Documentation/perf.data-file-format.txt (the header's data section)."""
    with data.open("r+b") as f:
        head = f.read(104)
        if head[:8] != b"PERFILE2":
            return 0
        offset, size = struct.unpack_from("<QQ", head, 40)
        f.seek(offset)
        events = bytearray(f.read(size))
        pos = fixed = 0
        while pos + 8 <= len(events):
            rtype, misc, length = struct.unpack_from("<IHH", events, pos)
            if length == 0:
                break
            if rtype == _PERF_RECORD_MMAP2 and misc & _MISC_MMAP_BUILD_ID:
                struct.pack_into("<H", events, pos + 4, misc & ~_MISC_MMAP_BUILD_ID)
                fixed += 1
            pos += length
        if fixed:
            f.seek(offset)
            f.write(events)
    return fixed


def perf_record_tree(cmd: list[str], data: Path, period_ns: int = 10_000_000) -> Path:
    """`perf record -- CMD` for a command and its children while another profiler records
    the whole system: perf's view of the very processes that profiler sees in the same run.

    Only the command's tree, not -a: perf 6.1's `perf script` aborts ("assertion failed at
    util/build-id.c:1010", then stack smashing) on samples of other processes here (the
    long C++ names of libLLVM in a recorder compiling its BPF program at the time, BPF
    programs loaded while it records). -B: no build IDs collected at the end, where it
    aborts likewise; not -N, with which `perf script` aborts on perf maps.
    --user-callchains: only user frames are compared. A fixed period (-c) rather than a
    frequency: a child's inherited counter starts at zero, so a process with less CPU time
    than the period is never sampled (perf -a's per-CPU counters have no such limit, as the
    recorder's have not); short-lived processes need a short one."""
    r = subprocess.run(["perf", "record", "-B", "-q", "--no-bpf-event", "--user-callchains",
                        "-g", "-e", "cpu-clock", "-c", str(period_ns), "-o", str(data), "--",
                        *cmd],
                       env=perf_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"perf record exited {r.returncode}: {r.stderr[-2000:]}")
    clear_leaked_build_id_flags(data)
    return data


def perf_leaves(data: Path, comms: set[str]) -> Counter[tuple[int, str]]:
    """Samples of those processes by (pid, perf's name of the user leaf)."""
    got: Counter[tuple[int, str]] = Counter()
    for s in perf_script(data).samples:
        if s.comm in comms:
            got[(s.pid, s.frames[0][1])] += 1
    return got
