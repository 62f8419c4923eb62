"""`ebpf-record`: thin command over recorder.session."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from cli_common import command as common
from cli_common.flags import (
    CONTEXT,
    DURATION,
    ListType,
    exit_codes_help,
    option,
    parse,
    version_option,
)
from recorder.options import RecordOptions
from recording.errors import OutputError, UsageError
from recording.writer import check_writable

if TYPE_CHECKING:
    from recorder.session import Summary

PROG = "ebpf-record"
SCOPE = "RECORD"  # twins of this command's own flags: PYROSCOPE_RECORD_<FLAG>
WHOLE_SYSTEM = -1  # `--pid -1`, as `pyroscope ebpf --pid -1`


@click.command(
    PROG, context_settings=CONTEXT, options_metavar="[OPTIONS] [-- COMMAND [ARGS]...]",
    help="Sample on-CPU stacks with BPF and write a recording for offline symbolization: "
    "of the whole system (the default), of --pid processes and their children, or of a "
    "COMMAND run after -- (as `pyroscope exec`).",
    epilog="\b\nExamples:\n  ebpf-record -o run.parquet --duration 30\n"
    "  ebpf-record -F 49 -p 1234,5678 -o run.parquet\n"
    "  ebpf-record -o run.parquet -- ./server --port 8080\n"
    "  ebpf-record -o - | ebpf-symbolize -\n\n"
    + exit_codes_help((0, 1, 2, 3, 4, 5, 130, 141),
                      "with -- COMMAND: the exit code of the command"))
@option("--out", "-o", scope=SCOPE, metavar="FILE",
        help="Parquet file to write, or - for an Arrow IPC stream on stdout (required)")
@option("--recover", scope=SCOPE, metavar="PARTIAL",
        help="turn the .OUT.XXXXXXXX.partial a killed recorder left into a Parquet recording "
        "(at OUT, or --out), then exit")
@option("--sample-rate", "-F", type=int, default=100, show_default=True, metavar="HZ",
        help="samples per second per CPU, as pyroscope ebpf and perf -F")
@option("--pid", "-p", "pids", multiple=True, metavar="PID[,PID...]",
        type=ListType(",", "PID[,PID...]"),
        help="profile this process and its children (repeatable, or a comma-separated list "
        "as perf -p); -1: the whole system, as pyroscope ebpf (the default)")
@option("--duration", scope=SCOPE, type=DURATION,
        help="stop after this long (default: until Ctrl-C/SIGTERM or the command exits)")
@option("--drain-interval", scope=SCOPE, type=DURATION, default=1.0, show_default=True,
        help="seconds per window: how often the kernel maps are read")
@option("--stack-storage-size", scope=SCOPE, type=int, default=None, metavar="N",
        help="stack map entries per drain (default: enough for a window, 4 x CPUs x rate x "
        "interval); raise if stacks are lost")
@option("--counts-size", scope=SCOPE, type=int, default=40960, show_default=True, metavar="N",
        help="unique (process, stack) entries per drain")
@option("--call-graph", scope=SCOPE, type=click.Choice(("dwarf", "fp")), default="dwarf",
        show_default=True,
        help="how user stacks are unwound (perf's word): dwarf from .eh_frame tables in BPF, "
        "frame pointers where an object has none; fp: frame pointers only")
@click.option("-g", "perf_g", is_flag=True,
              help="accepted for `perf record -g`: stacks are always recorded, unwound as "
              "--call-graph says (perf's -g means frame pointers: give --call-graph fp)")
@option("--unwind-table-rows", scope=SCOPE, type=int, default=4 << 20, show_default=True,
        metavar="N",
        help="at most this many unwind table rows in the kernel, 8 bytes each (32 MiB; sized "
        "below it from the objects mapped at start); objects beyond it are walked by frame "
        "pointers")
@option("--python/--no-python", envvar="PYROSCOPE_PYTHON_ENABLED", default=True,
        help="Python functions in the stacks of CPython 3.8-3.13 processes (default on; the "
        "variable is Alloy's python_enabled)")
@option("--include-idle", scope=SCOPE, is_flag=True, help="keep samples of the idle task")
@option("--all-kallsyms", scope=SCOPE, is_flag=True,
        help="store every kernel symbol, not only those frames fall in")
@option("--progress/--no-progress", scope=SCOPE, default=None,
        help="show progress (default: only on a terminal)")
@option("--debug-bpf", scope=SCOPE, is_flag=True, help="print the BPF program as loaded")
@option("--no-root-drop", scope=SCOPE, is_flag=True,
        help="run the command after -- as root; by default, under sudo it runs as the "
        "invoking user (SUDO_UID/SUDO_GID), as with pyroscope exec")
@version_option(PROG)
def command(**params: object) -> dict[str, object]:
    return params  # the run happens outside click (cli_common.command: errors, signals)


def _split_command(argv: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Flags, and the command after `--` (left to the command: `-- ./server --port 1`)."""
    if "--" not in argv:
        return argv, ()
    i = argv.index("--")
    if not argv[i + 1:]:
        raise UsageError("nothing after --; give the command to run, e.g. -- ./server")
    return argv[:i], tuple(argv[i + 1:])


def pids_of(items: tuple[str, ...]) -> tuple[int, ...]:
    """--pid values (`-p 1,2 -p 3`); `-1` alone is the whole system (no pid: empty)."""
    pids = []
    for item in items:
        for text in item.replace(",", " ").split():  # perf's `-p 1,2`; PYROSCOPE_PID="1 2"
            try:
                pids.append(int(text))
            except ValueError:
                raise UsageError(f"--pid: {text!r} is not a process ID") from None
    if WHOLE_SYSTEM in pids:
        if len(pids) > 1:
            raise UsageError("--pid -1 is the whole system; give it alone, or only PIDs")
        return ()
    for pid in pids:
        if pid < 1:
            raise UsageError(f"--pid {pid} is not a process ID (-1: the whole system)")
    return tuple(pids)


def options_from(a: object, command: tuple[str, ...]) -> RecordOptions:
    """RecordOptions from the parsed flags, checked."""
    p = vars(a)
    if p["out"] is None:
        raise UsageError(f"missing option --out (or -o, PYROSCOPE_RECORD_OUT); see `{PROG} "
                         "--help`")
    if not 1 <= p["sample_rate"] <= 10000:
        raise UsageError(f"--sample-rate {p['sample_rate']} is out of range; use 1..10000 Hz")
    for flag, value in (("--stack-storage-size", p["stack_storage_size"]),
                        ("--counts-size", p["counts_size"]),
                        ("--unwind-table-rows", p["unwind_table_rows"])):
        if value is not None and value < 64:
            raise UsageError(f"{flag} {value} is too small; use at least 64")
    return RecordOptions(
        out=p["out"], sample_rate=p["sample_rate"], pids=pids_of(p["pids"]), command=command,
        duration=p["duration"], drain_interval=p["drain_interval"],
        stack_storage_size=p["stack_storage_size"], counts_size=p["counts_size"],
        call_graph=p["call_graph"], unwind_table_rows=p["unwind_table_rows"],
        python=p["python"], include_idle=p["include_idle"], all_kallsyms=p["all_kallsyms"],
        progress=p["progress"], debug_bpf=p["debug_bpf"], no_root_drop=p["no_root_drop"],
    )


def parse_options(argv: list[str]) -> RecordOptions:
    """The library's options from a command line (for tests and callers of the CLI)."""
    flags, cmd = _split_command(argv)
    a = parse(command, PROG, flags)
    if isinstance(a, int):
        raise UsageError("--help and --version end the run; they give no options")
    return options_from(a, cmd)


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
        print(f"{PROG}: unwind tables: {u['objects']:,} objects, {u['rows']:,} rows in use "
              f"({u['rows'] * 8 / 2**20:.1f} of {u['rows_capacity'] * 8 / 2**20:.0f} MiB)"
              + (f"; {u['rows_loaded']:,} rows loaded, {u['objects_evicted']:,} unused "
                 f"objects evicted" if u["objects_evicted"] else "")
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


def recover(partial_path: str, out: str | None) -> int:
    from recording import partial

    if out == "-":
        raise UsageError("--recover writes a Parquet file; give --out FILE, not -")
    if out is not None:
        check_writable(out)
    dest, done = partial.recover(partial_path, out)
    print(f"{PROG}: recovered {done.windows} windows from {partial_path} into {dest}; "
          f"{partial_path} can be removed", file=sys.stderr)
    return 0


def record(argv: list[str]) -> int:
    flags, cmd = _split_command(argv)
    a = parse(command, PROG, flags)
    if isinstance(a, int):
        return a  # --help, --version
    if a.recover is not None:
        return recover(a.recover, a.out)
    opts = options_from(a, cmd)
    check_writable(opts.out)
    if opts.out == "-" and not _is_open(1):
        raise OutputError("--out -: stdout is closed; pipe it (| ebpf-symbolize -) or give "
                          "--out FILE")
    _reserve_standard_fds()
    if opts.out == "-" and sys.stdout.isatty():
        raise UsageError("--out - writes binary Arrow data; pipe it (| ebpf-symbolize -) "
                         "or give a file name")
    # bcc and the recorder proper, once the flags are good: --help, --version, completion and
    # a bad flag answer without them
    from recorder.session import Recorder
    from recorder.targets import check_target

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
