"""cli_common.command.exit_now: the console script's end without the interpreter's teardown
still delivers what was written, the exit code, and the one-line broken-pipe report."""

from __future__ import annotations

import os
import subprocess
import sys

# buffered, as stdout into a pipe is (PYTHONUNBUFFERED would write at once)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
CHILD = ("import sys; from cli_common.command import exit_now; "
         "sys.stdout.write('x' * 10); print('note', file=sys.stderr); exit_now('prog', 3)")


def test_buffered_output_and_code_survive():
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=ENV)
    assert (r.returncode, r.stdout, r.stderr) == (3, "x" * 10, "note\n")


def test_a_reader_gone_is_one_line_and_141():
    read, write = os.pipe()
    os.close(read)  # the next command of the pipe has exited
    try:
        r = subprocess.run([sys.executable, "-c", CHILD], stdout=write, stderr=subprocess.PIPE,
                           text=True, env=ENV)
    finally:
        os.close(write)
    assert r.returncode == 141
    assert r.stderr == ("note\nprog: output closed by its reader (the next command in the pipe "
                        "exited)\n")


def test_started_with_stdout_closed_keeps_its_code():
    # fd 1 closed (`>&-`): sys.stdout is None, and the end must not trip over it
    code = "from cli_common.command import exit_now; exit_now('prog', 5)"
    r = subprocess.run(["bash", "-c", f'"{sys.executable}" -c "{code}" >&-'],
                       capture_output=True, text=True, env=ENV)
    assert (r.returncode, r.stderr) == (5, "")
