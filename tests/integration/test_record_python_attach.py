"""Python frames of a CPython process started before the recorder (`ebpf-record --pid`) and of
one started after it; an unsupported version keeps its native frames and is said once
(issue 14). Needs root and BPF."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import tool
from tests.integration.python_record import (
    COMMON,
    DEBIAN,
    pyenv_python,
    python_frames,
    python_id,
    python_rounds,
    record_folded,
    stacks,
)

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

# `before`: waits for a line on stdin (the recorder runs by then), works, then starts the
# `after` process, which the recorder follows as a child of its --pid target
ATTACH = COMMON + '''
import subprocess
def alpha(rounds):
    for n in lengths(rounds): work(n)
def beta(rounds):
    for n in lengths(2 * rounds): work(n)
rounds = int(sys.argv[2])
if sys.argv[1] == "before":
    set_comm("py-before")
    print("ready", flush=True)
    sys.stdin.readline()
    # Its first samples make the recorder read its maps and load its unwind tables; until
    # then they are stack copies, and before its snapshot they have no Python frames. A
    # warm-up under another name takes them, so that py-before's samples are those of the
    # steady state.
    set_comm("py-warm")
    for n in lengths(rounds): work(n)
    set_comm("py-before")
    alpha(rounds)
    subprocess.run([sys.executable, __file__, "after", str(rounds)], check=True)
else:
    set_comm("py-after")
    beta(rounds)
'''


def _python_share(folded: str, comm: str, func: str) -> tuple[int, int]:
    """(samples of the `comm` process with `func` among its Python frames, all its samples)"""
    own = total = 0
    for frames, n in stacks(folded):
        if frames[0] == comm:
            total += n
            own += n if func in python_frames(frames, "attach.py") else 0
    return own, total


@pytest.mark.parametrize("python", [pyenv_python(8), DEBIAN, pyenv_python(13)], ids=python_id)
def test_processes_started_before_and_after_the_recorder(python, tmp_path):
    script = tmp_path / "attach.py"
    script.write_text(ATTACH)
    out = tmp_path / "run.parquet"
    # py-before's alpha ~1 s of CPU: ~400 samples at 400 Hz
    target = subprocess.Popen([python, str(script), "before", python_rounds(python, 1.0)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    recorder = None
    try:
        assert target.stdout is not None and target.stdin is not None
        assert target.stdout.readline() == "ready\n"  # the interpreter is up and waits
        recorder = subprocess.Popen([tool("ebpf-record"), "--no-progress", "--sample-rate",
                                     "400", "--out", str(out), "--pid", str(target.pid)],
                                    stderr=subprocess.PIPE, text=True)
        assert recorder.stderr is not None
        said = []
        for line in recorder.stderr:  # the recorder says so once it samples
            said.append(line)
            if line.startswith("ebpf-record: sampling "):
                break
        else:
            pytest.fail("".join(said))
        target.stdin.write("go\n")
        target.stdin.close()
        assert target.wait(timeout=240) == 0
        # it stops by itself once the target has exited
        _, rest = recorder.communicate(timeout=120)
        assert recorder.returncode == 0, "".join(said) + rest
    finally:
        for p in (target, recorder):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    s = subprocess.run([tool("ebpf-symbolize"), str(out)], capture_output=True, text=True,
                       timeout=120)
    assert s.returncode == 0, s.stderr
    for comm, func in (("py-before", "alpha"), ("py-after", "beta")):
        own, total = _python_share(s.stdout, comm, func)
        assert total > 200, (comm, s.stdout[-3000:])
        assert own >= 0.7 * total, (comm, own, total)
    # (no 1:2 check across the two: they run one after the other, and a machine whose load
    # changes meanwhile gives the same work different CPU times)


UNSUPPORTED = COMMON + '''
import os
children = []
for _ in range(2):  # forked children: the same reason, not said again
    pid = os.fork()
    if pid == 0:
        for n in lengths(int(sys.argv[1])): work(n)
        os._exit(0)
    children.append(pid)
for n in lengths(int(sys.argv[1])): work(n)
for pid in children: os.waitpid(pid, 0)
'''


@pytest.mark.parametrize("minor", [6, 7])
def test_unsupported_version_keeps_native_frames_and_says_why_once(minor, tmp_path):
    script = tmp_path / "old.py"
    script.write_text(UNSUPPORTED)
    # three processes of ~0.6 s of CPU each: ~180 samples at 100 Hz
    python = pyenv_python(minor)
    folded, err = record_folded(tmp_path, ["--", python, str(script),
                                           python_rounds(python, 0.6)], rate=100)
    why = [line for line in err.splitlines() if "not supported" in line]
    assert len(why) == 1, err
    assert why[0].startswith("ebpf-record: pid ") and f"CPython 3.{minor} " in why[0], why
    assert why[0].count("native frames only") == 1, why
    assert "old.py" not in folded  # no Python frames
    total = sum(n for _f, n in stacks(folded))
    native = sum(n for f, n in stacks(folded) if "_PyEval_EvalFrameDefault" in f)
    assert total > 100 and native >= 0.5 * total, (native, total, folded[-3000:])
