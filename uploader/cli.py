"""`ebpf-upload`: thin command over uploader/ (see uploader/__init__.py)."""

from __future__ import annotations

import json
import logging
import os
import sys

from cli_common.command import run
from recording.errors import ProfilerError, UsageError
from uploader.credentials import RedactingFilter, Redactor
from uploader.names import check_app
from uploader.options import SECRET_FLAGS, parse_args, resolve

log = logging.getLogger("ebpf-upload")
# Secret flags travel to the re-executed process here, as a JSON list of `--flag=value`:
# /proc/PID/environ is readable by the owner and root only, /proc/PID/cmdline by everyone.
MOVED_ENV = "EBPF_UPLOAD_SECRET_ARGS"


def _scrub_argv() -> None:
    """Re-exec with secret flags (whole names only: click takes no abbreviations)
    moved into the environment, so they leave the process title (/proc/PID/cmdline, `ps`)
    within milliseconds of start. They are parsed as flags again, so precedence holds."""
    argv, rest, moved = sys.argv[1:], [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        flag, eq, val = a.partition("=")
        if a == "--":
            rest += argv[i:]
            break
        if flag in SECRET_FLAGS and (eq or i + 1 < len(argv)):
            if not eq:
                i += 1
                val = argv[i]
            moved.append(f"{flag}={val}")
        else:
            rest.append(a)
        i += 1
    if moved:
        sys.stdout.flush()
        env = dict(os.environ)
        env[MOVED_ENV] = json.dumps(moved)
        os.execve(sys.executable, [sys.executable, sys.argv[0], *rest], env)


def _moved_args() -> list[str]:
    text = os.environ.pop(MOVED_ENV, None)
    if not text:
        return []
    try:
        moved = json.loads(text)
    except ValueError:
        moved = None
    if not isinstance(moved, list) or not all(isinstance(a, str) for a in moved):
        raise UsageError(f"{MOVED_ENV} is not what ebpf-upload sets there; unset it")
    return moved


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "warning"}.get(record.levelname, record.levelname.lower())
        return f"ebpf-upload: {level}: {record.getMessage()}"


def _setup_logging(level: str, quiet: bool) -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        log.addHandler(handler)
        log.propagate = False
    lvl = {"warn": "WARNING"}.get(level, level.upper())
    log.setLevel(logging.ERROR if quiet else lvl)


def _fill_closed_std_fds() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2 (`ebpf-upload - <&-`): else the next file opened
    (the spool's lock) takes its number and is read as the input or written as output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free fd: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _main(argv: list[str]) -> int:
    ns = parse_args(argv)
    if isinstance(ns, int):
        return ns  # --help, --version
    _setup_logging("info", False)
    opts = resolve(ns)
    _setup_logging(opts.log_level, opts.no_logging)
    check_app(opts.application_name)
    if "-" in opts.inputs and sys.stdin is None:  # Python's sign that fd 0 was closed
        raise UsageError("stdin is closed; pipe the stream in (ebpf-symbolize - | "
                         "ebpf-upload -) or give a FILE")
    redact = Redactor(opts.secrets)
    guard = RedactingFilter(redact)
    log.addFilter(guard)
    # requests and the symbolizer, once the flags are good (--help, --version answer without)
    from uploader.continuous import run_stream
    from uploader.replay import run_replay

    try:
        if opts.inputs == ("-",) and not opts.retime:
            return run_stream(opts)
        return run_replay(opts)
    except ProfilerError as exc:
        exc.args = (redact(str(exc)),)  # printed by cli_common.command.run
        raise
    finally:
        log.removeFilter(guard)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[0].endswith("ebpf-upload"):
        _scrub_argv()
    _fill_closed_std_fds()  # after the re-exec, which would hide a closed stdin
    if argv is None:
        try:
            argv = _moved_args() + sys.argv[1:]
        except UsageError as exc:
            print(f"ebpf-upload: error: {exc}", file=sys.stderr)
            return exc.exit_code
    return run("ebpf-upload", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
