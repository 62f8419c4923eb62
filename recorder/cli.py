"""`ebpf-record`: thin command over recorder.session."""

from __future__ import annotations

import os
import sys

from cli_common import command as common
from cli_common.argparser import ArgumentParser, parse_duration
from recorder.options import RecordOptions
from recorder.session import Recorder, Summary
from recorder.targets import check_target
from recording import partial
from recording.errors import OutputError, UsageError
from recording.writer import check_writable

PROG = "ebpf-record"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Sample on-CPU stacks with BPF and write a recording for offline "
        "symbolization.",
        epilog="Examples: ebpf-record --out run.parquet --duration 30 | "
        "ebpf-record --out run.parquet -- ./server --port 8080 | "
        "ebpf-record --out - | ebpf-symbolize -",
    )
    p.add_argument("--out", help="Parquet file to write, or - for an Arrow IPC stream on "
                   "stdout (required)")
    p.add_argument("--recover", metavar="PARTIAL",
                   help="turn the .OUT.XXXXXXXX.partial a killed recorder left into a Parquet "
                   "recording (at OUT, or --out), then exit")
    p.add_argument("--sample-rate", type=int, default=100, metavar="HZ",
                   help="samples per second per CPU (default 100, as pyroscope ebpf)")
    p.add_argument("--pid", type=int, action="append", default=[], metavar="PID",
                   help="profile this process and its children (repeatable)")
    p.add_argument("--duration", type=parse_duration, metavar="SECONDS",
                   help="stop after this long (default: until Ctrl-C/SIGTERM or the command "
                   "exits)")
    p.add_argument("--drain-interval", type=parse_duration, default=1.0, metavar="SECONDS",
                   help="seconds per window: how often the kernel maps are read (default 1)")
    p.add_argument("--stack-storage-size", type=int, default=None, metavar="N",
                   help="stack map entries per drain (default: enough for a window, "
                   "4 x CPUs x rate x interval); raise if stacks are lost")
    p.add_argument("--counts-size", type=int, default=40960, metavar="N",
                   help="unique (process, stack) entries per drain (default 40960)")
    p.add_argument("--call-graph", choices=("dwarf", "fp"), default="dwarf",
                   help="how user stacks are unwound (perf's word): dwarf (default) from "
                   ".eh_frame tables in BPF, frame pointers where an object has none; fp: "
                   "frame pointers only")
    p.add_argument("--unwind-table-rows", type=int, default=4 << 20, metavar="N",
                   help="at most this many unwind table rows in the kernel, 8 bytes each "
                   "(default 4194304: 32 MiB; sized below it from the objects mapped at "
                   "start); objects beyond it are walked by frame pointers")
    p.add_argument("--python", dest="python", action="store_true",
                   default=os.environ.get("PYROSCOPE_PYTHON_ENABLED", "true").lower()
                   not in ("0", "false", "no"),
                   help="Python functions in the stacks of CPython 3.8-3.13 processes "
                   "(default on; env PYROSCOPE_PYTHON_ENABLED, as Alloy's python_enabled)")
    p.add_argument("--no-python", dest="python", action="store_false")
    p.add_argument("--include-idle", action="store_true", help="keep samples of the idle task")
    p.add_argument("--all-kallsyms", action="store_true",
                   help="store every kernel symbol, not only those frames fall in")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--debug-bpf", action="store_true", help="print the BPF program as loaded")
    p.add_argument("--no-root-drop", action="store_true",
                   help="run the command after -- as root; by default, under sudo it runs as "
                   "the invoking user (SUDO_UID/SUDO_GID), as with pyroscope exec")
    return p


def parse_options(argv: list[str]) -> RecordOptions:
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], tuple(argv[i + 1 :])
        if not command:
            raise UsageError("nothing after --; give the command to run, e.g. -- ./server")
    else:
        command = ()
    a = build_parser().parse_args(argv)
    if a.out is None:
        raise UsageError(f"the following arguments are required: --out; see `{PROG} --help`")
    if not 1 <= a.sample_rate <= 10000:
        raise UsageError(f"--sample-rate {a.sample_rate} is out of range; use 1..10000 Hz")
    for flag, value in (("--stack-storage-size", a.stack_storage_size),
                        ("--counts-size", a.counts_size),
                        ("--unwind-table-rows", a.unwind_table_rows)):
        if value is not None and value < 64:
            raise UsageError(f"{flag} {value} is too small; use at least 64")
    return RecordOptions(
        out=a.out, sample_rate=a.sample_rate, pids=tuple(a.pid), command=command,
        duration=a.duration, drain_interval=a.drain_interval,
        stack_storage_size=a.stack_storage_size, counts_size=a.counts_size,
        call_graph=a.call_graph, unwind_table_rows=a.unwind_table_rows, python=a.python,
        include_idle=a.include_idle, all_kallsyms=a.all_kallsyms,
        progress=a.progress, debug_bpf=a.debug_bpf, no_root_drop=a.no_root_drop,
    )


def report(s: Summary, opts: RecordOptions) -> None:
    where = "stdout" if opts.out == "-" else opts.out
    share = 100.0 * s.cpu_steady / s.seconds if s.seconds else 0.0
    lost = s.lost_user_stacks + s.lost_kernel_stacks + s.dropped_counts_full
    print(
        f"{PROG}: {s.samples:,} samples ({lost:,} lost), {s.processes:,} processes, "
        f"{s.objects:,} objects, {s.bytes_written:,} bytes to {where} in {s.seconds:.1f} s; "
        f"recorder CPU {s.cpu_total:.2f} s ({s.cpu_steady:.2f} s after start-up, "
        f"{share:.2f}% of one core)",
        file=sys.stderr,
    )
    with_stack = {k: v for k, v in s.unwinders.items() if k is not None}
    if with_stack:
        total = sum(with_stack.values())
        parts = ", ".join(f"{100.0 * v / total:.1f}% {k}" for k, v in
                          sorted(with_stack.items(), key=lambda kv: -kv[1]))
        print(f"{PROG}: user stacks unwound by {parts}"
              + (" (fp: objects without an unwind table, or processes seen before their "
                 "tables were loaded)" if "fp" in with_stack and opts.call_graph == "dwarf"
                 else ""), file=sys.stderr)
    if s.unwind:
        u = s.unwind
        print(f"{PROG}: unwind tables: {u['objects']:,} objects, {u['rows']:,} rows "
              f"({u['rows'] * 8 / 2**20:.1f} of {u['rows_capacity'] * 8 / 2**20:.0f} MiB)"
              + (f"; {u['objects_without_table']:,} objects without a table"
                 if u["objects_without_table"] else ""), file=sys.stderr)
        if u["objects_over_capacity"]:
            print(f"{PROG}: warning: {u['objects_over_capacity']:,} objects did not fit the "
                  f"unwind table rows and were walked by frame pointers; raise "
                  f"--unwind-table-rows (now {u['rows_capacity']:,})", file=sys.stderr)
    if s.lost_user_stacks or s.lost_kernel_stacks:
        print(f"{PROG}: warning: {s.lost_user_stacks + s.lost_kernel_stacks:,} stacks lost to "
              f"a full stack map; raise --stack-storage-size (now "
              f"{s.stack_entries})", file=sys.stderr)
    if s.without_mapping:
        share = 100.0 * s.without_mapping / max(1, s.samples)
        print(f"{PROG}: {s.without_mapping:,} samples ({share:.1f}%) have a user leaf that no "
              "recorded mapping covers (processes that exited before their mappings were "
              "read): they cannot be symbolized", file=sys.stderr)
    if s.targets_full:
        print(f"{PROG}: warning: {s.targets_full:,} child processes were not followed: the "
              "target map (65,536 live processes) was full", file=sys.stderr)
    if s.dropped_counts_full:
        print(f"{PROG}: warning: {s.dropped_counts_full:,} samples dropped, the count map was "
              f"full; raise --counts-size (now {opts.counts_size}) or lower --drain-interval",
              file=sys.stderr)


def recover(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    if a.out == "-":
        raise UsageError("--recover writes a Parquet file; give --out FILE, not -")
    if a.out is not None:
        check_writable(a.out)
    out, done = partial.recover(a.recover, a.out)
    print(f"{PROG}: recovered {done.windows} windows from {a.recover} into {out}; "
          f"{a.recover} can be removed", file=sys.stderr)
    return 0


def record(argv: list[str]) -> int:
    flags = argv[: argv.index("--")] if "--" in argv else argv
    if any(f == "--recover" or f.startswith("--recover=") for f in flags):
        return recover(argv)
    opts = parse_options(argv)
    check_writable(opts.out)
    if opts.out == "-" and not _is_open(1):
        raise OutputError("--out -: stdout is closed; pipe it (| ebpf-symbolize -) or give "
                          "--out FILE")
    _reserve_standard_fds()
    if opts.out == "-" and sys.stdout.isatty():
        raise UsageError("--out - writes binary Arrow data; pipe it (| ebpf-symbolize -) "
                         "or give a file name")
    target = check_target(opts.pids, opts.command, opts.no_root_drop)
    summary = Recorder(opts, target).run()
    report(summary, opts)
    return summary.exit_code


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _reserve_standard_fds() -> None:
    """With fd 0, 1 or 2 closed (`<&-`, `>&-`), the next file opened gets that number, and a
    stray write to stdout or stderr would land in it (the recording, a perf event fd). Point
    closed ones at /dev/null; open() returns the lowest free number, so each lands in place."""
    for fd in (0, 1, 2):
        if not _is_open(fd):
            os.open(os.devnull, os.O_RDWR)


def main(argv: list[str] | None = None) -> int:
    return common.run(PROG, record, argv)


if __name__ == "__main__":
    sys.exit(main())
