"""What the three console scripts share: one-line errors, signals, terminal detection."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

from recording.errors import ProfilerError


def run(prog: str, main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a command's main; turn ProfilerError into `prog: error: msg` and its exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return main(args)
    except ProfilerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`| head`, or the next command of a chain exited).
        _silence_stdout()
        print(f"{prog}: output closed by its reader (the next command in the pipe exited)",
              file=sys.stderr)
        return 141


def exit_now(prog: str, code: int) -> None:
    """End the process with `code` once stdout and stderr are flushed, skipping the
    interpreter's teardown. A symbolizer run ends holding every frame, name and symbol table
    it made, and freeing them one by one took ~40 ms of a 1 s run (30 s of a busy host) for
    memory the kernel takes back at once. Only for the console scripts' own processes, after
    every file is closed and committed: no atexit handler of ours is left to run."""
    try:
        if sys.stdout is not None:  # None: started with fd 1 closed (`>&-`)
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        print(f"{prog}: output closed by its reader (the next command in the pipe exited)",
              file=sys.stderr)
        code = 141
    except OSError as exc:
        print(f"{prog}: error: cannot write the output: {exc.strerror}", file=sys.stderr)
        code = code or 1
    with contextlib.suppress(OSError, AttributeError):  # stderr may be closed too (None)
        sys.stderr.flush()
    os._exit(code)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def is_terminal(stream: object = None) -> bool:
    """Progress goes to a terminal only; quiet when piped or redirected."""
    s = sys.stderr if stream is None else stream
    isatty = getattr(s, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
