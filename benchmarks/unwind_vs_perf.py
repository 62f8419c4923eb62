#!/usr/bin/env python3
"""ebpf-record's BPF unwinder (`--call-graph dwarf`) against `perf record --call-graph dwarf`,
side by side in one run, on Debian's own sort, xz -3, gzip -6 and python3.11 (issue 10).

1. One run, both profilers: `ebpf-record --out X` and `perf record -e cpu-clock --call-graph
   dwarf -F HZ -a -N` record the whole system while the four programs run in sequence, each
   on a fixed amount of work (tests/integration/debian_workloads.py). Per program (by pid):
   - share of samples whose user stack reaches the process entry or a thread start
     (tests/integration/recorded_stacks.py: _start, __libc_start_main, __libc_start_call_main,
     start_thread, clone3 among the outermost three frames), ours vs perf's;
   - total variation distance between the two leaf-function distributions (symbol aliases,
     e.g. __memcpy_/__memmove_ at one address, counted as one function);
   - stacks perf truncates (its default dwarf stack copy is 8 KB) that we do not: perf's
     samples that do not reach an entry whose frames are the leaf end of one of our stacks
     that does (and is longer);
   - bytes per sample: each file's size over its samples.
   Ours are symbolized with the symbolizer's engine, perf's with `perf script --no-inline`.
2. Slowdown: the same programs alone, under ebpf-record, `perf record -g` and `perf record
   --call-graph dwarf` (separate runs, interleaved per repeat so drift hits all alike): time
   to finish the fixed work, median over repeats, and each tool's CPU while it ran
   (/proc/PID/task/*/schedstat) and ebpf-record's own steady-state figure (its summary).
3. Start-up for the whole system with a cold unwind-table cache (XDG_CACHE_HOME an empty
   directory) and warm (the same directory again): time from start until the "sampling"
   line on stderr, and until the unwind rows in the kernel stop growing (the recorder's
   `unwind_rows` array, read through a duplicate of its fd: pidfd_getfd(2), then mmap, as the
   recorder itself writes it), with the summary's `unwind tables:` objects and rows.

    sudo .venv/bin/python benchmarks/unwind_vs_perf.py             # ~10 min
    sudo .venv/bin/python benchmarks/unwind_vs_perf.py --quick     # ~3 min
    sudo .venv/bin/python benchmarks/unwind_vs_perf.py --recorder-arg=--unwind-table-rows=16777216
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import mmap
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from record_vs_perf import (  # benchmarks/ is sys.path[0]
    BIN,
    READY_TIMEOUT,
    SUMMARY,
    BenchError,
    _tail,
    bench_dir,
    machine_busy_s,
    spread,
    start_perf,
    task_cpu_ns,
    wait_rusage,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.integration import debian_workloads  # noqa: E402
from tests.integration.perf_oracle import clear_leaked_build_id_flags  # noqa: E402
from tests.integration.recorded_stacks import canonical, reaches_entry, user_stacks  # noqa: E402

PERF = shutil.which("perf") or "/usr/bin/perf"
SETTLE_SECONDS = 2.0
STEADY = re.compile(r"after start-up, ([\d.]+)% of one core")
TABLES = re.compile(r"unwind tables: ([\d,]+) objects, ([\d,]+) rows")
OVER = re.compile(r"warning: ([\d,]+) objects did not fit")
UNWOUND = re.compile(r"user stacks unwound by ([^(\n]*)")
PERF_FRAME = re.compile(r"^\s+([0-9a-f]+) (.*) \((.*)\)$")
MODES = ("alone", "ebpf-record", "perf -g", "perf dwarf")
Stack = tuple[str, ...]  # root first


def _int(text: str) -> int:
    return int(text.replace(",", ""))


# -- running ------------------------------------------------------------------------------------
@dataclass
class ProgramRun:
    name: str
    pid: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0


def run_programs(cmds: dict[str, list[str]]) -> list[ProgramRun]:
    """The programs one after another, each to completion; pid, wall and CPU of each."""
    runs = []
    for name, cmd in cmds.items():
        run = ProgramRun(name)
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run.pid = p.pid
        code, run.cpu_s = wait_rusage(p)
        run.wall_s = time.monotonic() - t0
        if code != 0:
            raise BenchError(f"{name} exited with {code}: {p.stderr.read()[-300:]!r}"
                             if p.stderr else f"{name} exited with {code}")
        runs.append(run)
    return runs


class EbpfRecord:
    """ebpf-record system-wide, started and waited for until its "sampling" line."""

    def __init__(self, recorder: Path, out: Path, extra: list[str], tmp: Path,
                 env: dict[str, str] | None = None) -> None:
        self.err_path = tmp / f"ebpf-record-{out.stem}.err"
        self.err = self.err_path.open("w+")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen([str(recorder), "--no-progress", "--out", str(out), *extra],
                                  stdout=subprocess.DEVNULL, stderr=self.err, env=env)
        deadline = self.t0 + READY_TIMEOUT
        while "ebpf-record: sampling" not in self.err_path.read_text():
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise BenchError("ebpf-record did not start: " + _tail(self.err))
            time.sleep(0.01)
        self.ready_s = time.monotonic() - self.t0
        self.cpu_total_s = 0.0

    def stop(self) -> str:
        os.kill(self.p.pid, signal.SIGINT)
        code, self.cpu_total_s = wait_rusage(self.p)
        text = self.err_path.read_text()
        if code != 0 or not SUMMARY.search(text):
            raise BenchError(f"ebpf-record failed ({code}): {text.strip()[-400:]}")
        return text


def perf_args(call_graph: str, rate: int, out: Path, *, for_script: bool = False
              ) -> list[str]:
    """`perf record` flags. -B (no build IDs): perf 6.1 aborts collecting them at the end of
    a run ("assertion failed at util/build-id.c:1010", then stack smashing) on MMAP2 records
    another consumer of the same mmaps flagged as carrying a build ID (a recorder older than
    this one; tests/integration/perf_oracle.py, clear_leaked_build_id_flags, which clears them
    before `perf script`). The run whose stacks are compared also gets --user-callchains
    (only user stacks are compared) and --no-bpf-event."""
    graph = ["--call-graph", "dwarf"] if call_graph == "dwarf" else ["-g"]
    script = ["--user-callchains", "--no-bpf-event"] if for_script else []
    return ["-e", "cpu-clock", *graph, *script, "-F", str(rate), "-a", "-B", "-o", str(out)]


def stop_perf(p: subprocess.Popen, fds: tuple[int, int], err) -> float:
    """SIGINT; perf's CPU seconds."""
    os.kill(p.pid, signal.SIGINT)
    code, cpu = wait_rusage(p)
    for fd in fds:
        os.close(fd)
    text = _tail(err, 4000)
    # perf re-raises the SIGINT it stopped on after writing its file
    if code not in (0, -signal.SIGINT) or "Captured and wrote" not in text:
        raise BenchError(f"perf record failed ({code}): {text.strip()[-300:]}")
    return cpu


def perf_sample_count(data: Path) -> int:
    """Samples in perf.data (with -B perf does not print the count it wrote)."""
    clear_leaked_build_id_flags(data)
    got = subprocess.run([PERF, "script", "-i", str(data), "-F", "pid"], capture_output=True,
                         text=True, check=False)
    if got.returncode != 0:
        raise BenchError(f"perf script failed: {got.stderr.strip()[-300:]}")
    return sum(1 for line in got.stdout.splitlines() if line.strip())


# -- stacks -------------------------------------------------------------------------------------
def perf_stacks(data: Path, pids: set[int]) -> dict[int, Counter[tuple[Stack, tuple[str, ...]]]]:
    """perf's user stacks per pid: (root-first names, root-first objects) -> samples."""
    clear_leaked_build_id_flags(data)
    got = subprocess.run([PERF, "script", "-i", str(data), "--no-inline", "--pid",
                          ",".join(map(str, sorted(pids))), "-F", "pid,tid,ip,sym,dso"],
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
        raise BenchError(f"perf script failed: {got.stderr.strip()[-300:]}")
    out: dict[int, Counter] = defaultdict(Counter)
    pid, frames = None, []

    def close() -> None:
        user = [(n, d) for n, d in frames if not _kernel_dso(d)]
        if pid is not None and user:
            user.reverse()
            out[pid][(tuple(n for n, _ in user), tuple(d for _, d in user))] += 1

    for line in got.stdout.splitlines():
        if not line.strip():
            close()
            pid, frames = None, []
        elif not line[0].isspace() or (pid is None and "/" in line):
            pid = int(line.split("/", 1)[0])
        else:
            m = PERF_FRAME.match(line)
            if m:
                sym, dso = m.group(2), m.group(3)
                name = (f"[{os.path.basename(dso)}]" if dso != "[unknown]" else "[unknown]") \
                    if sym == "[unknown]" else canonical(sym.split("+0x", 1)[0])
                frames.append((name, dso))
    close()
    return out


def _kernel_dso(dso: str) -> bool:
    return dso.startswith("[") and dso not in ("[vdso]", "[unknown]")


class Aliases:
    """Names at one address of one object count as one function: glibc's string functions
    have several (__memmove_avx_unaligned_erms and __memcpy_avx_unaligned_erms), and each
    symbolizer may pick another. From the object's .dynsym and its debug file's .symtab."""

    def __init__(self) -> None:
        self._by_object: dict[str, dict[str, str]] = {}

    def __call__(self, obj: str | None, name: str) -> str:
        if not obj or not obj.startswith("/"):
            return name
        table = self._by_object.get(obj)
        if table is None:
            table = self._by_object[obj] = self._load(obj)
        return table.get(name, name)

    @staticmethod
    def _load(obj: str) -> dict[str, str]:
        files = [obj]
        note = subprocess.run(["readelf", "-n", obj], capture_output=True, text=True).stdout
        m = re.search(r"Build ID: ([0-9a-f]+)", note)
        if m:
            debug = Path(f"/usr/lib/debug/.build-id/{m.group(1)[:2]}/{m.group(1)[2:]}.debug")
            if debug.exists():
                files.append(str(debug))
        by_addr: dict[str, set[str]] = defaultdict(set)
        for f in files:
            for flags in (["-D"], []):
                nm = subprocess.run(["nm", "--defined-only", *flags, f], capture_output=True,
                                    text=True).stdout
                for line in nm.splitlines():
                    parts = line.split()
                    if len(parts) == 3 and parts[1] in "tTWi":
                        by_addr[parts[0]].add(canonical(parts[2]))
        return {n: min(names) for names in by_addr.values() for n in names}


def tvd(p: Counter[str], q: Counter[str]) -> float:
    sp, sq = sum(p.values()), sum(q.values())
    if not sp or not sq:
        return float("nan")
    return 0.5 * sum(abs(p[k] / sp - q[k] / sq) for k in set(p) | set(q))


@dataclass
class ProgramFigures:
    name: str
    ours_samples: int = 0
    perf_samples: int = 0
    ours_entry: float = 0.0
    perf_entry: float = 0.0
    leaf_tvd: float = 0.0
    perf_truncated_ours_complete: int = 0  # perf samples
    ours_truncated_perf_complete: int = 0  # our samples
    ours_unwinders: dict[str, int] = field(default_factory=dict)
    ours_stops: dict[str, int] = field(default_factory=dict)
    where_perf_stops: list[tuple[str, int, int, float]] = field(default_factory=list)
    top_leaves: list[tuple[str, float, float]] = field(default_factory=list)


def _suffixes(stacks: Counter[Stack]) -> set[Stack]:
    return {s[i:] for s in stacks if reaches_entry(s) for i in range(1, len(s))}


def _truncated_elsewhere(short_side: Counter[Stack], complete_side: Counter[Stack]
                         ) -> Counter[Stack]:
    """Stacks of one side that do not reach an entry but are the leaf end of a complete
    stack of the other side."""
    tails = _suffixes(complete_side)
    return Counter({s: n for s, n in short_side.items()
                    if not reaches_entry(s) and s in tails})


def program_figures(name: str, ours: list, theirs: Counter, aliases: Aliases
                    ) -> ProgramFigures:
    fig = ProgramFigures(name)
    our_stacks: Counter[Stack] = Counter()
    our_leaves: Counter[str] = Counter()
    unwinders: Counter[str] = Counter()
    stops: Counter[str] = Counter()
    for s in ours:
        our_stacks[s.frames] += s.count
        our_leaves[aliases(s.where[-1][0], s.frames[-1])] += s.count
        unwinders[s.unwinder or "none"] += s.count
        stops[s.stop or "none"] += s.count
    perf_stacks_: Counter[Stack] = Counter()
    perf_leaves: Counter[str] = Counter()
    for (frames, dsos), n in theirs.items():
        perf_stacks_[frames] += n
        perf_leaves[aliases(dsos[-1], frames[-1])] += n
    fig.ours_samples = sum(our_stacks.values())
    fig.perf_samples = sum(perf_stacks_.values())
    fig.ours_entry = _share(our_stacks)
    fig.perf_entry = _share(perf_stacks_)
    fig.leaf_tvd = tvd(our_leaves, perf_leaves)
    fig.ours_unwinders, fig.ours_stops = dict(unwinders), dict(stops)
    perf_short = _truncated_elsewhere(perf_stacks_, our_stacks)
    fig.perf_truncated_ours_complete = sum(perf_short.values())
    fig.ours_truncated_perf_complete = sum(_truncated_elsewhere(our_stacks,
                                                                perf_stacks_).values())
    # where perf stopped: its outermost frame, with its depth and ours through that frame
    at: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for s, n in perf_short.items():
        at[s[0]].append((len(s), n))
    our_depth = {s[0]: statistics.median(len(o) for o in our_stacks if reaches_entry(o)
                                         and s[0] in o) for s in perf_short}
    fig.where_perf_stops = sorted(
        ((frame, sum(n for _, n in v), round(statistics.median(d for d, _ in v)),
          our_depth[frame]) for frame, v in at.items()), key=lambda t: -t[1])[:5]
    tot_o, tot_p = sum(our_leaves.values()) or 1, sum(perf_leaves.values()) or 1
    fig.top_leaves = [(k, our_leaves[k] / tot_o, perf_leaves[k] / tot_p)
                      for k, _ in (our_leaves + perf_leaves).most_common(5)]
    return fig


def _share(stacks: Counter[Stack]) -> float:
    total = sum(stacks.values())
    return sum(n for s, n in stacks.items() if reaches_entry(s)) / total if total else 0.0


# -- 1. one run, both profilers ------------------------------------------------------------------
def compare(args: argparse.Namespace, tmp: Path, cmds: dict[str, list[str]]) -> dict:
    out, data = tmp / "both.parquet", tmp / "both-perf.data"
    perf_err = (tmp / "perf-both.err").open("w+")
    rec = EbpfRecord(args.recorder, out, ["--sample-rate", str(args.sample_rate),
                                          *args.recorder_arg], tmp)
    try:
        perf, fds = start_perf(perf_args("dwarf", args.sample_rate, data, for_script=True),
                               perf_err)
    except BaseException:
        rec.stop()
        raise
    time.sleep(SETTLE_SECONDS)
    try:
        progs = run_programs(cmds)
        time.sleep(1.5)  # the drain window after the last program's exit
    finally:
        stop_perf(perf, fds, perf_err)
        summary = rec.stop()
    m = SUMMARY.search(summary)
    assert m is not None
    ours_total = _int(m.group(1))
    ours_bytes = out.stat().st_size
    perf_bytes = data.stat().st_size
    perf_samples = perf_sample_count(data)
    pids = {p.pid for p in progs}
    ours: dict[int, list] = defaultdict(list)
    for s in user_stacks(str(out)):
        if s.pid in pids:
            ours[s.pid].append(s)
    theirs = perf_stacks(data, pids)
    aliases = Aliases()
    figs = [program_figures(p.name, ours[p.pid], theirs.get(p.pid, Counter()), aliases)
            for p in progs]
    tables = TABLES.search(summary)
    over = OVER.search(summary)
    unwound = UNWOUND.search(summary)
    return {
        "programs": [asdict(f) for f in figs],
        "ours_samples": ours_total, "ours_bytes": ours_bytes,
        "perf_samples": perf_samples, "perf_bytes": perf_bytes,
        "ours_bytes_per_sample": ours_bytes / max(ours_total, 1),
        "perf_bytes_per_sample": perf_bytes / max(perf_samples, 1),
        "tables": [_int(tables.group(1)), _int(tables.group(2))] if tables else None,
        "objects_over_capacity": _int(over.group(1)) if over else 0,
        "unwound_by": unwound.group(1).strip() if unwound else "",
        "program_runs": [asdict(p) for p in progs],
    }


PERF_SCRIPT_TRIES = 3


def compare_retrying(args: argparse.Namespace, tmp: Path, cmds: dict[str, list[str]]) -> dict:
    """perf script can still abort on a sample taken inside a BPF program (see perf_args):
    the run is repeated, and the number of tries reported."""
    for attempt in range(1, PERF_SCRIPT_TRIES + 1):
        try:
            c = compare(args, tmp, cmds)
        except BenchError as exc:
            if not str(exc).startswith("perf script failed") or attempt == PERF_SCRIPT_TRIES:
                raise
            print(f"unwind_vs_perf: {str(exc).splitlines()[-1]}; running again",
                  file=sys.stderr)
            continue
        c["tries"] = attempt
        return c
    raise AssertionError("not reached")


def compare_text(c: dict) -> list[str]:
    lines = [
        "| program | samples ours / perf | reach entry: ours | perf | ours - perf | "
        "leaf TVD | perf truncated, ours complete | ours truncated, perf complete | "
        "ours unwound by |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in c["programs"]:
        unw = ", ".join(f"{k} {v}" for k, v in sorted(f["ours_unwinders"].items(),
                                                      key=lambda kv: -kv[1]))
        lines.append(
            f"| {f['name']} | {f['ours_samples']:,} / {f['perf_samples']:,} | "
            f"{100 * f['ours_entry']:.1f}% | {100 * f['perf_entry']:.1f}% | "
            f"{100 * (f['ours_entry'] - f['perf_entry']):+.1f} | {f['leaf_tvd']:.3f} | "
            f"{f['perf_truncated_ours_complete']:,} | {f['ours_truncated_perf_complete']:,} | "
            f"{unw} |")
    if c.get("tries", 1) > 1:
        lines += ["", f"(run {c['tries']} times: perf script aborted on the earlier ones)"]
    lines += ["", f"Bytes per sample: ours {c['ours_bytes_per_sample']:,.0f} "
              f"({c['ours_bytes']:,} B / {c['ours_samples']:,} samples), perf "
              f"{c['perf_bytes_per_sample']:,.0f} ({c['perf_bytes']:,} B / "
              f"{c['perf_samples']:,}); ratio "
              f"{c['ours_bytes_per_sample'] / c['perf_bytes_per_sample']:.4f} "
              f"(1/{c['perf_bytes_per_sample'] / c['ours_bytes_per_sample']:.0f})."]
    if c["tables"]:
        lines.append(f"ebpf-record: unwind tables {c['tables'][0]:,} objects, "
                     f"{c['tables'][1]:,} rows; {c['objects_over_capacity']:,} objects did "
                     f"not fit; all samples unwound by {c['unwound_by']}.")
    lines.append("")
    for f in c["programs"]:
        stops = ", ".join(f"{k} {v}" for k, v in sorted(f["ours_stops"].items(),
                                                        key=lambda kv: -kv[1]))
        lines.append(f"{f['name']}: our stops: {stops}; top leaves (ours/perf): " + "; ".join(
            f"{k} {100 * a:.0f}/{100 * b:.0f}%" for k, a, b in f["top_leaves"]))
        for frame, n, depth, ours_depth in f["where_perf_stops"]:
            lines.append(f"  perf stops at {frame} ({n} samples, {depth} frames; ours reach "
                         f"the entry through it in {ours_depth:.0f} frames)")
    return lines


# -- 2. slowdown ---------------------------------------------------------------------------------
@dataclass
class SlowRun:
    mode: str
    repeat: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    tool_steady_pct: float = 0.0  # of one core, while the programs ran
    reported_steady_pct: float | None = None  # ebpf-record's summary
    background_cores: float = 0.0


def slowdown_run(mode: str, repeat: int, args: argparse.Namespace, tmp: Path,
                 cmds: dict[str, list[str]]) -> SlowRun:
    run = SlowRun(mode, repeat)
    rec = perf = None
    fds: tuple[int, int] = (-1, -1)
    err = (tmp / f"perf-slow-{repeat}.err").open("w+")
    perf_data = tmp / f"slow-{repeat}.data"
    if mode == "ebpf-record":
        rec = EbpfRecord(args.recorder, tmp / f"slow-{repeat}.parquet",
                         ["--sample-rate", str(args.sample_rate), *args.recorder_arg], tmp)
    elif mode.startswith("perf"):
        perf, fds = start_perf(perf_args(mode.split()[1].lstrip("-"), args.sample_rate,
                                         perf_data), err)
    tool_pid = rec.p.pid if rec else perf.pid if perf else None
    try:
        if tool_pid:
            time.sleep(SETTLE_SECONDS)
        busy0, tool0, t0 = machine_busy_s(), task_cpu_ns(tool_pid) if tool_pid else 0, \
            time.monotonic()
        progs = run_programs(cmds)
        run.wall_s = time.monotonic() - t0
        tool_s = (task_cpu_ns(tool_pid) - tool0) / 1e9 if tool_pid else 0.0
        run.cpu_s = sum(p.cpu_s for p in progs)
        run.tool_steady_pct = 100 * tool_s / run.wall_s
        run.background_cores = max(0.0, machine_busy_s() - busy0 - run.cpu_s - tool_s) \
            / run.wall_s
    finally:
        if rec:
            m = STEADY.search(rec.stop())
            run.reported_steady_pct = float(m.group(1)) if m else None
        if perf:
            stop_perf(perf, fds, err)
            perf_data.unlink()
    return run


def slowdown_text(runs: list[SlowRun]) -> list[str]:
    def ratios(mode: str, attr: str) -> list[float]:
        base = {r.repeat: getattr(r, attr) for r in runs if r.mode == "alone"}
        return [getattr(r, attr) / base[r.repeat] for r in runs if r.mode == mode]

    def of(mode: str, attr: str) -> list[float]:
        return [getattr(r, attr) for r in runs if r.mode == mode and getattr(r, attr)
                is not None]

    lines = ["| | " + " | ".join(f"`{m}`" if m != "alone" else m for m in MODES) + " |",
             "|---|" + "---:|" * len(MODES)]
    for label, attr, fmt, ratio in (("programs' wall time, s", "wall_s", ".2f", False),
                                    ("programs' CPU time, s", "cpu_s", ".2f", False),
                                    ("slowdown, wall", "wall_s", ".3f", True),
                                    ("slowdown, CPU", "cpu_s", ".3f", True),
                                    ("tool CPU while they ran, % of one core",
                                     "tool_steady_pct", ".3f", False)):
        cells = [spread(ratios(m, attr) if ratio else of(m, attr), fmt)
                 if not (m == "alone" and attr == "tool_steady_pct") else "–" for m in MODES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    own = of("ebpf-record", "reported_steady_pct")
    lines += ["", f"ebpf-record's own steady CPU (summary line): {spread(own, '.2f')}% of one "
              f"core; background while the programs ran: "
              f"{spread([r.background_cores for r in runs], '.2f')} cores of "
              f"{os.cpu_count()}."]
    return lines


# -- 3. start-up ---------------------------------------------------------------------------------
BPF_F_MMAPABLE = 1 << 10  # include/uapi/linux/bpf.h
SYS_PIDFD_GETFD = 438  # x86-64


class RowsProbe:
    """How many unwind rows the recorder has written to the kernel: its `unwind_rows` array
    (BPF_F_MMAPABLE, 16-byte values; /proc/PID/fdinfo names each map fd's type and sizes),
    duplicated with pidfd_getfd(2) and mapped read-only. Tables are written back to back from
    row 0 and a row's pc (an ELF address) is never 0, so the rows in use are the prefix of
    non-zero pcs, found by binary search."""

    def __init__(self, pid: int) -> None:
        fd, self.capacity = self._find(pid)
        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = os.pidfd_open(pid)
        try:
            mine = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
            if mine < 0:
                raise BenchError(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
        finally:
            os.close(pidfd)
        try:
            self.map = mmap.mmap(mine, self.capacity * 16, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(mine)

    @staticmethod
    def _find(pid: int) -> tuple[int, int]:
        for name in os.listdir(f"/proc/{pid}/fdinfo"):
            with contextlib.suppress(OSError):
                info = dict(line.split(":", 1) for line in
                            Path(f"/proc/{pid}/fdinfo/{name}").read_text().splitlines()
                            if ":" in line)
                info = {k: v.strip() for k, v in info.items()}
                if (info.get("map_type") == "2" and info.get("value_size") == "16"
                        and int(info.get("map_flags", "0"), 16) & BPF_F_MMAPABLE):
                    return int(name), int(info["max_entries"])
        raise BenchError(f"no unwind_rows map among the fds of pid {pid}")

    def rows(self) -> int:
        lo, hi = 0, self.capacity
        while lo < hi:
            mid = (lo + hi) // 2
            if int.from_bytes(self.map[mid * 16:mid * 16 + 8], "little"):
                lo = mid + 1
            else:
                hi = mid
        return lo


@dataclass
class StartupRun:
    cache: str  # cold | warm
    sampling_s: float = 0.0  # start -> "sampling" line
    rows_90_s: float = 0.0  # start -> 90% of the rows at the end
    rows_done_s: float = 0.0  # start -> the last growth of the rows
    rows: int = 0
    objects: int = 0
    over_capacity: int = 0
    recorder_cpu_s: float = 0.0


def startup_run(kind: str, cache: Path, args: argparse.Namespace, tmp: Path) -> StartupRun:
    run = StartupRun(kind)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    rec = EbpfRecord(args.recorder, tmp / f"startup-{kind}.parquet", args.recorder_arg, tmp,
                     env=env)
    run.sampling_s = rec.ready_s
    series: list[tuple[float, int]] = []
    try:
        probe = RowsProbe(rec.p.pid)
        while time.monotonic() - rec.t0 < rec.ready_s + args.startup_seconds:
            series.append((time.monotonic() - rec.t0, probe.rows()))
            time.sleep(0.05)
        probe.map.close()
    finally:
        summary = rec.stop()
    run.recorder_cpu_s = rec.cpu_total_s
    final = series[-1][1] if series else 0
    run.rows_90_s = next((t for t, n in series if n >= 0.9 * final), 0.0)
    run.rows_done_s = next((t for t, n in series if n >= final), 0.0)
    m = TABLES.search(summary)
    if m:
        run.objects, run.rows = _int(m.group(1)), _int(m.group(2))
    over = OVER.search(summary)
    run.over_capacity = _int(over.group(1)) if over else 0
    return run


def startup_text(runs: list[StartupRun], seconds: float) -> list[str]:
    lines = [f"System-wide, {seconds:g} s after the sampling line; times from the start of "
             "ebpf-record.", "",
             "| table cache | until `sampling` | 90% of rows loaded | rows stop growing | "
             "objects | rows | did not fit | recorder CPU, s |", "|---|" + "---:|" * 7]
    for r in runs:
        lines.append(f"| {r.cache} | {r.sampling_s:.2f} s | {r.rows_90_s:.2f} s | "
                     f"{r.rows_done_s:.2f} s | {r.objects:,} | {r.rows:,} | "
                     f"{r.over_capacity:,} | {r.recorder_cpu_s:.2f} |")
    return lines


# -- main ----------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run: a quarter of the work, "
                    "one repeat, 6 s of start-up watching")
    ap.add_argument("--repeats", type=int, help="slowdown repeats (default 3; --quick 1)")
    ap.add_argument("--sample-rate", type=int, default=100, metavar="HZ")
    ap.add_argument("--only", action="append", choices=("compare", "slowdown", "startup"),
                    help="run only this part (repeatable)")
    ap.add_argument("--startup-seconds", type=float, help="how long start-up is watched "
                    "after the sampling line (default 15; --quick 6)")
    ap.add_argument("--recorder", type=Path, default=BIN / "ebpf-record", metavar="PATH")
    ap.add_argument("--recorder-arg", action="append", default=[], metavar="ARG",
                    help="extra ebpf-record flag, e.g. --recorder-arg=--unwind-table-rows=N")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("unwind_vs_perf: run as root (BPF and system-wide perf)", file=sys.stderr)
        return 4
    scale = 0.25 if args.quick else 1.0
    repeats = args.repeats or (1 if args.quick else 3)
    args.startup_seconds = args.startup_seconds or (6.0 if args.quick else 15.0)
    parts = args.only or ["compare", "slowdown", "startup"]
    results: dict = {"load_before": os.getloadavg()}
    with bench_dir("unwind_vs_perf", "unwind-bench-") as tmp:
        text = debian_workloads.write_text(tmp / "text.txt")
        cmds = debian_workloads.commands(text, tmp, scale)
        out: list[str] = [f"unwind_vs_perf: {', '.join(cmds)} in sequence, work scale "
                          f"{scale:g}, {args.sample_rate} Hz, system-wide; load average "
                          f"{os.getloadavg()[0]:.2f} at start; recorder flags: "
                          f"{' '.join(args.recorder_arg) or '(defaults)'}"]
        if "compare" in parts:
            print("unwind_vs_perf: one run, both profilers ...", file=sys.stderr)
            results["compare"] = c = compare_retrying(args, tmp, cmds)
            out += ["", "## One run, ebpf-record and perf --call-graph dwarf together", "",
                    *compare_text(c)]
        if "slowdown" in parts:
            runs = []
            for i in range(repeats):
                for mode in MODES:
                    print(f"unwind_vs_perf: slowdown {i + 1}/{repeats} {mode} ...",
                          file=sys.stderr)
                    runs.append(slowdown_run(mode, i, args, tmp, cmds))
            results["slowdown"] = [asdict(r) for r in runs]
            out += ["", f"## Slowdown: time to finish the same work, median (min–max) of "
                    f"{repeats}", "", *slowdown_text(runs)]
        if "startup" in parts:
            cache = tmp / "cache"
            cache.mkdir(mode=0o700)
            srun = []
            for kind in ("cold", "warm"):
                print(f"unwind_vs_perf: start-up, {kind} table cache ...", file=sys.stderr)
                srun.append(startup_run(kind, cache, args, tmp))
            results["startup"] = [asdict(r) for r in srun]
            out += ["", "## Start-up", "", *startup_text(srun, args.startup_seconds)]
        results["load_after"] = os.getloadavg()
        out += ["", f"Load average at the end: {os.getloadavg()[0]:.2f} "
                f"({os.cpu_count()} CPUs)."]
        print("\n".join(out))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
