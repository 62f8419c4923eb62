"""ebpf-symbolize FILE|- : a recording in, named stacks out (folded by default).

The flags only; run.py runs over the library: flags.py (symbol sources), reading.py (the read
loop), windows.py (output windows), sinks/ (formats), output.py (--out), progress.py and
stopping.py.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from cli_common.command import exit_now, run
from cli_common.flags import CONTEXT, exit_codes_help, option, parse, version_option
from cli_common.timeparse import TIME_HELP
from recording.errors import UsageError
from symbolizer.flags import symbol_options

if TYPE_CHECKING:
    from discovery.discovery import Discovery

PROG = "ebpf-symbolize"
SCOPE = "SYMBOLIZE"  # --format, --out, --from... mean other things to the other commands


@click.command(
    PROG, context_settings=CONTEXT,
    help="Symbolize an ebpf-record recording (a file, or - for a stream on stdin) offline: "
    "named stacks as folded text (default) or another --format. Never runs code from the "
    "files it reads.",
    epilog="\b\nExamples:\n  ebpf-symbolize run.parquet > run.folded\n"
    "  ebpf-symbolize run.parquet --no-headers | flamegraph.pl > flame.svg\n"
    "  ebpf-symbolize run.parquet --format html --out flame.html\n"
    "  ebpf-record -o - | ebpf-symbolize - | ebpf-upload -\n\n"
    + exit_codes_help((0, 1, 2, 3, 4, 5, 130, 141)))
@click.argument("recording", metavar="RECORDING")
@option("--format", scope=SCOPE, default="folded", show_default=True,
        help="output format: folded, pprof, speedscope, html, parquet")
@option("--out", "-o", scope=SCOPE, default="-", metavar="FILE",
        help="output file (default: stdout); replaced only once the run completes")
@option("--from", "from_", scope=SCOPE, metavar="TIME",
        help=f"first time to include: {TIME_HELP} of the recording")
@option("--until", scope=SCOPE, metavar="TIME",
        help="end of the time to include (exclusive), in the same forms")
@option("--window", scope=SCOPE, metavar="DURATION",
        help="split output into windows of this length (e.g. 10s)")
@option("--lines", scope=SCOPE, is_flag=True, help="add file:line and inlined frames from DWARF")
@option("--quiet", "-q", scope=SCOPE, is_flag=True,
        help="no report of the frames left unresolved (printed to stderr otherwise)")
@option("--annotations", scope=SCOPE, is_flag=True,
        help="folded: add _[k] to kernel frames, as bcc's profile.py --annotations and "
        "stackcollapse-perf.pl --kernel write them (flamegraph.pl colours them apart)")
@option("--per-pid", scope=SCOPE, is_flag=True,
        help="folded: one stack per process, rooted at comm;PID rather than comm")
@option("--no-headers", scope=SCOPE, is_flag=True,
        help="folded: leave out the `# ebpf-profiler` lines (window, rate, and addresses "
        "and build IDs for ebpf-upload's pprof, of each block); "
        "flamegraph.pl skips them with \"Ignored N lines with invalid format\", and "
        "ebpf-upload then needs --from/--until")
@option("--kubernetes-node", metavar="NAME",
        help="label each process with its pod, listing the pods of this node with the "
        "in-cluster service account; without it, processes are labelled by container ID or "
        "systemd unit")
@option("--only-services", is_flag=True,
        help="drop processes discovery cannot place in a pod, container or systemd unit")
@symbol_options
@version_option(PROG)
def command(**params: object) -> dict[str, object]:
    return params  # the run happens outside click (cli_common.command: errors, signals)


def parse_args(argv: list[str]) -> Any:
    """The parsed flags (attributes named as the flags), or UsageError."""
    a = parse(command, PROG, argv)
    if isinstance(a, int):
        raise UsageError("--help and --version end the run; they give no options")
    return a


def symbolize_main(argv: list[str], *, discovery: Discovery | None = None) -> int:
    """The command. `discovery`: one made by the caller (e.g. with an explicit API client
    configuration) instead of the one --kubernetes-node / --only-services describe."""
    a = parse(command, PROG, argv)  # bad flags: UsageError, one line
    if isinstance(a, int):
        return a  # --help, --version
    from symbolizer.run import symbolize  # the heavy part, once the flags are good

    return symbolize(a, PROG, discovery)


def main(argv: list[str] | None = None) -> int:
    code = run(PROG, symbolize_main, argv)
    if argv is None:  # the console script's own process: nothing runs after this
        exit_now(PROG, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
