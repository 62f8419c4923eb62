"""The flags of the three commands, on click: one way to declare a flag with its `PYROSCOPE_*`
environment twin, and one way to parse, that reports a bad flag as one line.

Precedence is the `pyroscope ebpf` agent's: a flag wins over its twin, which wins over the
default (click's own order: command line, then `envvar`, then `default`). An empty variable
counts as unset, as the agent reads it. The twin of a flag is `PYROSCOPE_` + the flag in upper
snake case (`--sample-rate`: PYROSCOPE_SAMPLE_RATE) for the agent's flags, ebpf-upload's and
the symbol-source flags ebpf-symbolize and ebpf-upload share; the other flags of ebpf-record
and ebpf-symbolize carry their command's name (scope: PYROSCOPE_RECORD_DURATION,
PYROSCOPE_SYMBOLIZE_FORMAT), since `--out`, `--format`, `--from` and `--until` mean other
things to other commands: one environment configures the whole chain (`ebpf-record --out - |
ebpf-symbolize - | ebpf-upload -`) without one command taking another's setting. `--help`
shows each flag's variable.

click takes no abbreviations of long flags (`--auth-tok` is not `--auth-token`), which is what
lets ebpf-upload find every secret flag by its whole name and move it out of `ps`.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Sequence
from typing import Any

import click
from click.core import ParameterSource

from cli_common import timeparse
from recording.errors import UsageError

ENV_PREFIX = "PYROSCOPE_"
HELP_FLAGS = ("-h", "--help")
CONTEXT: dict[str, Any] = {"help_option_names": list(HELP_FLAGS), "max_content_width": 100}

# The exit codes of recording.errors' hierarchy and of cli_common.command.run, for the
# --help epilogs (the README lists the same).
EXIT_CODES = {
    0: "done",
    1: "failed (the message says why)",
    2: "bad flags or arguments",
    3: "unreadable recording or input (truncated, corrupt, unknown version)",
    4: "the machine lacks something (root, BPF, kernel headers, bcc)",
    5: "the output cannot be written",
    6: "not delivered (what was not sent waits in the spool)",
    130: "interrupted (Ctrl-C)",
    141: "the output was closed by its reader (the next command of a pipe exited)",
}


def exit_codes_help(codes: Sequence[int], *extra: str) -> str:
    """An epilog paragraph click prints as is (the \\b marker: no rewrapping)."""
    rows = [f"  {c:<4} {EXIT_CODES[c]}" for c in codes] + [f"  {e}" for e in extra]
    return "\b\nExit codes:\n" + "\n".join(rows)


def env_twin(flag: str, scope: str = "") -> str:
    """`--sample-rate` -> PYROSCOPE_SAMPLE_RATE; with scope "SYMBOLIZE": PYROSCOPE_SYMBOLIZE_..."""
    name = flag.lstrip("-").replace("-", "_").upper()
    return ENV_PREFIX + (f"{scope}_" if scope else "") + name


def option(*decls: str, scope: str = "", envvar: str | None = None, **kw: Any
           ) -> Callable[[Any], Any]:
    """click.option with the flag's environment twin (env_twin of its long name, or `envvar`),
    shown in --help."""
    long = next(d for d in decls if d.startswith("--")).split("/")[0]
    kw.setdefault("show_envvar", True)
    return click.option(*decls, envvar=envvar or env_twin(long, scope), **kw)


class ListType(click.ParamType[str]):
    """A repeatable flag's items; its twin holds several, split at `sep` (None: whitespace),
    blanks dropped: PYROSCOPE_TAG="env=prod,team=db"."""

    name = "text"

    def __init__(self, sep: str | None, metavar: str = "TEXT") -> None:
        self.sep = sep
        self.metavar = metavar

    def split_envvar_value(self, rv: str) -> Sequence[str]:
        return [s.strip() for s in rv.split(self.sep) if s.strip()]

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return self.metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> str:
        return str(value)


class MergedOption(click.Option):
    """A repeatable flag whose items add to its twin's instead of replacing them (the agent
    merges `--tag` per key: PYROSCOPE_TAG="env=prod,team=db" plus `--tag env=dev` gives
    env=dev, team=db). The twin's items come first, so a reader taking the last one per key
    lets the flag win."""

    def consume_value(self, ctx: click.Context, opts: Any) -> tuple[Any, ParameterSource]:
        value, source = super().consume_value(ctx, opts)
        if source is ParameterSource.COMMANDLINE:
            env = self.value_from_envvar(ctx)
            if env:
                value = (*env, *value)
        return value, source


class Duration(click.ParamType[float]):
    """A positive duration: `30`, `30s`, `5m`, `1h`, `250ms`, `1m30s` (cli_common.timeparse)."""

    name = "duration"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = timeparse.parse_duration(str(value))
        except UsageError:
            self.fail(f"invalid duration {value!r}; use seconds or a unit: 30s, 5m, 1h")
        if seconds <= 0:
            self.fail(f"duration must be positive, got {value!r}")
        return seconds


DURATION = Duration()


def version_option(prog: str) -> Callable[[Any], Any]:
    # the installed distribution's version, read only when --version is asked for
    return click.version_option(package_name="ebpf-profiler", prog_name=prog,
                                message="%(prog)s %(version)s")


def parse(command: click.Command, prog: str, argv: Sequence[str]) -> types.SimpleNamespace | int:
    """The parsed flags, or an exit code when the run ends here (--help, --version). Shell
    completion (`_EBPF_RECORD_COMPLETE=bash_source ebpf-record`) prints its script and exits
    inside click. A bad flag raises UsageError: one line, exit 2."""
    try:
        rv = command.main(args=list(argv), prog_name=prog, standalone_mode=False)
    except click.ClickException as exc:
        raise UsageError(f"{_one_line(exc).rstrip('.')}; see `{prog} --help`") from None
    if isinstance(rv, int):
        return rv  # click.exceptions.Exit after --help or --version
    return types.SimpleNamespace(**rv)


def _one_line(exc: click.ClickException) -> str:
    if isinstance(exc, click.NoSuchOption):
        # argparse's words, which scripts and the docs know; click's guesses are names only
        # (never a value: `--auth-tok=SECRET` shows as --auth-tok)
        guesses = [p for p in exc.possibilities or () if p not in HELP_FLAGS]
        hint = f" (did you mean {guesses[0]}?)" if guesses else ""
        return f"unrecognized arguments: {exc.option_name}{hint}"
    if isinstance(exc, click.MissingParameter):
        return " ".join(exc.format_message().split())
    if isinstance(exc, click.BadParameter) and exc.param is not None and exc.ctx is not None:
        name = exc.param.name or ""
        flag = max(exc.param.opts, key=len) if exc.param.opts else name
        message = exc.message
        if isinstance(exc.param.type, click.types.BoolParamType):  # not click's list of words
            message = message.split(". Recognized values")[0] + "; use true or false"
        if exc.ctx.get_parameter_source(name) is ParameterSource.ENVIRONMENT:
            return f"{_envvar_name(exc.param)} (for {flag}): {message}"
        return f"{flag}: {message}"
    return " ".join(exc.format_message().split())


def _envvar_name(param: click.Parameter) -> str:
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    return next((n for n in names if os.environ.get(n)), names[0] if names else "?")

