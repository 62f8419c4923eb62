"""`ebpf-upload`: thin command over uploader/ (see uploader/__init__.py)."""

from __future__ import annotations

import logging
import os
import sys

from recording.cli import run
from uploader.continuous import run_stream
from uploader.names import check_app
from uploader.options import build_parser, env_name, resolve
from uploader.replay import run_replay

log = logging.getLogger("ebpf-upload")
_MOVE_TO_ENV = ("--auth-token", "--basic-auth-password")


def _scrub_argv() -> None:
    """Re-exec with secret flags moved into the environment, so they leave the process
    title (/proc/PID/cmdline, `ps`) within milliseconds of start."""
    argv, rest, env, moved = sys.argv[1:], [], dict(os.environ), False
    i = 0
    while i < len(argv):
        a = argv[i]
        flag, eq, val = a.partition("=")
        if a == "--":
            rest += argv[i:]
            break
        if flag in _MOVE_TO_ENV and (eq or i + 1 < len(argv)):
            if not eq:
                i += 1
                val = argv[i]
            env[env_name(flag)] = val
            moved = True
        else:
            rest.append(a)
        i += 1
    if moved:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, sys.argv[0], *rest], env)


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


def _main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    _setup_logging("info", False)
    opts = resolve(ns, os.environ)
    _setup_logging(opts.log_level, opts.no_logging)
    check_app(opts.application_name)
    if opts.inputs == ("-",) and not opts.retime:
        return run_stream(opts)
    return run_replay(opts)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[0].endswith("ebpf-upload"):
        _scrub_argv()
    return run("ebpf-upload", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
