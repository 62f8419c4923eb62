"""Python frames of processes in their first moments (issue 10): stack copies, and the code
objects of processes that exit before the drain after their samples.

A process whose mapping list is not in the kernel yet (its first milliseconds, or all the
time libpython's unwind table takes to build from .eh_frame on a machine whose table cache is
empty) has its user stack copied and unwound later in user space (recorder/stack_copies.py).
Its Python frames are read at the sample (bpf/python.h, py_walk_all), so such samples show the
same Python frames, in the same places, as the ones the BPF unwinder walks, and their code
objects are named even if the process is gone by the drain. An empty XDG_CACHE_HOME gives
every run a cold table cache, so the first part of each run is stack copies.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recording.pyframes import CODE_ADDR_MASK, code_objects, is_code_entry
from tests.conftest import tool
from tests.integration.python_record import (
    COMMON,
    DEBIAN,
    pyenv_python,
    python_id,
    python_rounds,
)

SCRIPT = COMMON + '''
import sys
def alpha(rounds):
    for n in lengths(rounds): work(n)
alpha(int(sys.argv[1]))
'''


def _key(stack: list[int]) -> tuple[object, ...]:
    """A user stack without what varies from sample to sample of one loop: the leaf's native
    pc and each Python frame's instruction index."""
    out: list[object] = []
    i, leaf = 0, True
    while i < len(stack):
        if is_code_entry(stack[i]) and i + 1 < len(stack):
            out.append((stack[i] & CODE_ADDR_MASK, stack[i + 1] >> 32))
            i += 2
            continue
        if not leaf:
            out.append(stack[i])
        leaf = False
        i += 1
    return tuple(out)


@pytest.mark.parametrize("python", [pyenv_python(8), DEBIAN, pyenv_python(12), pyenv_python(13)],
                         ids=python_id)
def test_stack_copies_have_python_frames(python, tmp_path):
    script = tmp_path / "cp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run.parquet"
    # ~2 s of CPU: the copies while libpython's table builds, then the BPF unwinder's samples
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([tool("ebpf-record"), "--no-progress", "--sample-rate", "400",
                        "--out", str(out), "--", python, str(script),
                        python_rounds(python, 2.0)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    rows = pq.read_table(out).to_pylist()
    pid = next(row["pid"] for row in rows if row["record"] == "sample"
               and row["comm"] in (Path(python).name, "python3"))
    names = {(row["addr"], row["py_checksum"]): row for row in rows
             if row["record"] == "pycode" and row["pid"] == pid}
    copies: Counter[tuple[object, ...]] = Counter()
    walked: Counter[tuple[object, ...]] = Counter()
    copied = copied_python = copied_named = 0
    for row in rows:
        if row["record"] != "sample" or row["pid"] != pid or not row["user_stack"]:
            continue
        unwinder = row["user_unwinder"] or ""
        stack = row["user_stack"]
        if "copy" in unwinder:
            copied += row["count"]
            if "python" in unwinder:
                copied_python += row["count"]
                copies[_key(stack)] += row["count"]
                # named at the copy's arrival: each frame's code object has its pycode row
                keys = code_objects(stack)
                assert all(key in names for key in keys), keys
                if all(names[key]["name"] for key in keys):
                    copied_named += row["count"]
        elif "python" in unwinder:
            walked[_key(stack)] += row["count"]
    assert copied >= 20, f"only {copied} stack copies: the cold table cache gave too few\n" \
        + r.stderr
    # the few without: the interpreter's start-up before it runs any Python code
    assert copied_python >= 0.7 * copied, (copied_python, copied, r.stderr)
    # the few not: a module's top-level code, freed once its import is done (the BPF
    # unwinder's samples meet it too), read as something else by the time it is read
    assert copied_named >= 0.9 * copied_python, (copied_named, copied_python)
    assert sum(walked.values()) >= 50, r.stderr
    # the same loop's stacks come out the same either way: Python frames in the same places
    # among the same native frames
    same = sum(n for key, n in copies.items() if key in walked)
    assert same >= 0.5 * copied_python, (same, copied_python)
    work = [k for k, row in names.items() if row["name"] == "work" and row["path"] == str(script)]
    assert work and any(any(isinstance(f, tuple) and f in work for f in key) for key in copies)


@pytest.mark.parametrize("python", [pyenv_python(8), DEBIAN, pyenv_python(13)], ids=python_id)
def test_processes_gone_before_the_drain_have_named_python_frames(python, tmp_path):
    # Processes of ~0.1 s: most exit within the drain window their samples fall in, so the
    # code objects are read while they live only because the BPF program sends those it
    # meets first (bpf/profile.c `pycodes`); read at the drain, they would be unnamed.
    script = tmp_path / "short.py"
    script.write_text(SCRIPT.replace("alpha", "short_main"))
    out = tmp_path / "run.parquet"
    loop = f"for i in $(seq 12); do {python} {script} {python_rounds(python, 0.08)}; done"
    r = subprocess.run([tool("ebpf-record"), "--no-progress", "--sample-rate", "400",
                        "--out", str(out), "--", "sh", "-c", loop],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = pq.read_table(out).to_pylist()
    names = {(row["pid"], row["addr"], row["py_checksum"]): row["name"] for row in rows
             if row["record"] == "pycode"}
    with_python = named = in_work = 0
    pids = set()
    for row in rows:
        keys = code_objects(row["user_stack"] or []) if row["record"] == "sample" else []
        if not keys:
            continue
        pids.add(row["pid"])
        with_python += row["count"]
        got = [names.get((row["pid"], *key)) for key in keys]
        if all(got):
            named += row["count"]
        if "work" in got:
            in_work += row["count"]
    assert len(pids) >= 8 and with_python >= 100, (pids, with_python, r.stderr)
    # what stays unnamed: frames of the interpreter's last moments (code objects being freed
    # as it exits) and of a process gone before the recorder's next wake-up
    assert named >= 0.6 * with_python, (named, with_python)
    assert in_work >= 0.4 * with_python, (in_work, with_python)
