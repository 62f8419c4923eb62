"""Code that appears after the recorder first saw a process (issue 9), against perf on the same
run: short-lived processes, children forked without exec, a library dlopen()ed mid-window,
and JIT code named in /tmp/perf-PID.map after start-up (file and stream mode). perf gets each
executable mmap from the kernel as it happens (PERF_RECORD_MMAP2) and reads perf maps when it
reports; the recorder must name as many of those samples' leaves as perf does. Needs root, BPF
and perf (Debian's linux-perf)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import tool
from tests.integration.perf_oracle import perf_leaves, perf_record_tree, perf_unavailable_reason
from tests.integration.recorded_stacks import user_stacks

pytestmark = [pytest.mark.bpf, pytest.mark.slow]
# perf's named-leaf share minus this many points is the least the recorder may have (issue 9:
# short-lived processes and forked children)
POINTS = 0.05
# JIT code named late: the issue sets no figure; a process the recorder first sees after it
# exited has only the kernel's mmap records, which a busy machine's ring can drop
JIT_POINTS = 0.10


@pytest.fixture(autouse=True)
def _perf():
    why = perf_unavailable_reason()
    if why and os.environ.get("CI") == "true":
        pytest.fail(why)
    elif why:
        pytest.skip(why)


@pytest.fixture
def perf_maps():
    """The lifecycle fixture's perf maps, removed after the test (perf reads them at report
    time, so they must outlive the processes)."""
    before = set(glob.glob("/tmp/perf-*.map"))
    yield
    for path in set(glob.glob("/tmp/perf-*.map")) - before:
        with open(path, "rb") as f:
            if b"jitted_loop" in f.read(4096):
                os.unlink(path)


def side_by_side(cmd: list[str], tmp: Path, comms: set[str], *, stream: bool = False,
                 perf_period_ns: int = 10_000_000) -> tuple[Path, Counter[tuple[int, str]]]:
    """The recorder on the whole system and perf on `cmd`'s tree, in the same run: the
    recorder first, perf (starting `cmd`) once the recorder samples. Returns the recorder's
    output (its file, or with `stream` what ebpf-symbolize printed of the --out - stream as
    it ran) and perf's leaves of the `comms` processes."""
    out = tmp / ("run.folded" if stream else "run.parquet")
    rec = subprocess.Popen([tool("ebpf-record"), "--no-progress", "--out",
                            "-" if stream else str(out)],
                           stdout=subprocess.PIPE if stream else subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    sym = None
    if stream:
        with out.open("w") as folded:
            sym = subprocess.Popen([tool("ebpf-symbolize"), "-"], stdin=rec.stdout,
                                   stdout=folded, stderr=subprocess.DEVNULL)
        assert rec.stdout is not None
        rec.stdout.close()
    assert rec.stderr is not None
    for line in rec.stderr:
        if "ebpf-record: sampling" in line:
            break
    else:
        raise AssertionError(f"recorder ended before sampling (exit {rec.wait()})")
    try:
        perf_record_tree(cmd, tmp / "perf.data", perf_period_ns)
    finally:
        rec.send_signal(signal.SIGINT)
        err = rec.communicate(timeout=120)[1]
        if sym is not None:
            sym.wait(timeout=120)
    assert rec.returncode == 0, err
    assert sym is None or sym.returncode == 0
    return out, perf_leaves(tmp / "perf.data", comms)


def our_leaves(recording: Path, comms: set[str]) -> Counter[tuple[int, str]]:
    got: Counter[tuple[int, str]] = Counter()
    for s in user_stacks(str(recording)):
        if s.comm in comms and s.leaf is not None:
            got[(s.pid, s.leaf)] += s.count
    return got


def named_share(leaves: Counter[tuple[int, str]], pids: set[int] | None = None
                ) -> tuple[float, int]:
    """Share of samples whose user leaf has a name (perf's `[unknown]`, our `[object]`)."""
    mine = {k: n for k, n in leaves.items() if pids is None or k[0] in pids}
    total = sum(mine.values())
    named = sum(n for (_, leaf), n in mine.items() if not leaf.startswith("["))
    return (named / total if total else 0.0), total


def by_name(leaves: Counter[tuple[int, str]]) -> Counter[str]:
    c: Counter[str] = Counter()
    for (_, leaf), n in leaves.items():
        c[leaf] += n
    return c


def test_short_lived_processes_named_as_perf_names_them(fixture_bins, rounds_for, tmp_path):
    # 40 processes of ~15 ms of CPU each (calibrated: a fixed 6 rounds were 19 samples of the
    # recorder's in one run), without frame pointers, and 100 of /bin/true (a few ms each,
    # most of it in ld.so and the kernel's exec)
    rounds = rounds_for(0.015, at_least=1)
    script = (f"for i in $(seq 40); do WORKLOAD_ROUNDS={rounds} {fixture_bins}/workload-nofp 0; "
              "done; for i in $(seq 100); do /bin/true; done")
    comms = {"workload-nofp", "true"}
    # perf every 1 ms of each process's CPU time (see perf_record_tree), the recorder at
    # 100 Hz per CPU: the shares are compared, not the counts
    out, theirs = side_by_side(["bash", "-c", script], tmp_path, comms,
                               perf_period_ns=1_000_000)
    ours = our_leaves(out, comms)
    share, total = named_share(ours)
    perf_share, perf_total = named_share(theirs)
    assert perf_total >= 100 and total >= 20, (total, perf_total)
    assert share >= perf_share - POINTS, (f"ours {share:.3f} of {total}, perf "
                                          f"{perf_share:.3f} of {perf_total}",
                                          by_name(ours).most_common(8),
                                          by_name(theirs).most_common(8))
    assert by_name(ours)["lib_beta"] > 0


def test_children_forked_without_exec_named_as_perf_names_them(fixture_bins, rounds_for,
                                                               tmp_path):
    # 12 children of ~80 ms of CPU each (a round is 10^6 iterations: calibrated, as a fixed
    # 100 rounds were 31 ms in one run), one after another, that never exec: they run on
    # their parent's mappings (its snapshot, recorded as theirs)
    rounds = max(1, rounds_for.loop_iterations(0.08) // 1_000_000)
    out, theirs = side_by_side([str(fixture_bins / "lifecycle"), "forks", "12", str(rounds)],
                               tmp_path, {"lifecycle"})
    ours = our_leaves(out, {"lifecycle"})
    parent = {pid for (pid, leaf), _ in theirs.items() if leaf == "native_warmup"}
    children = {pid for pid, _ in theirs} - parent
    assert len(children) >= 6, theirs
    share, total = named_share(ours, children)
    perf_share, perf_total = named_share(theirs, children)
    assert perf_total >= 40 and total >= 0.8 * perf_total, (total, perf_total)
    assert share >= perf_share - POINTS, (share, perf_share, by_name(ours).most_common(6))
    assert by_name(ours)["child_work"] >= 0.8 * by_name(theirs)["child_work"]


def test_library_dlopened_mid_window_named_as_perf_names_them(fixture_bins, tmp_path):
    lib = fixture_bins / "libfixture-nofp.so"
    out, theirs = side_by_side([str(fixture_bins / "lifecycle"), "dlopen", str(lib), "4000"],
                               tmp_path, {"lifecycle"})
    ours = our_leaves(out, {"lifecycle"})
    share, _ = named_share(ours)
    perf_share, _ = named_share(theirs)
    assert by_name(theirs)["lib_beta"] >= 20, theirs
    assert share >= perf_share - POINTS, (share, perf_share, by_name(ours).most_common(6))
    assert by_name(ours)["lib_beta"] >= by_name(theirs)["lib_beta"] * (1 - POINTS) - 3


@pytest.mark.parametrize("mode", ["file", "stream"])
def test_jit_code_named_after_start_as_perf_names_it(fixture_bins, tmp_path, perf_maps, mode):
    # six processes that each name their JIT code in their perf map ~0.3 s after they start
    # and exit ~0.2 s later: most are gone before the drain that reads their samples
    script = f"for i in 1 2 3 4 5 6; do {fixture_bins}/lifecycle jit 400; done"
    out, perf = side_by_side(["bash", "-c", script], tmp_path, {"lifecycle"},
                             stream=mode == "stream")
    theirs = by_name(perf)
    perf_jit = theirs["jitted_loop"] / (sum(theirs.values()) or 1)
    assert theirs["jitted_loop"] >= 30, theirs
    if mode == "file":
        ours = by_name(our_leaves(out, {"lifecycle"}))
    else:  # the stream's folded lines, as ebpf-symbolize printed them while the run went on
        ours = Counter()
        for line in out.read_text().splitlines():
            if line.startswith("lifecycle;"):
                stack, n = line.rsplit(" ", 1)
                frames = stack.split(";")
                ours["jitted_loop" if "jitted_loop" in frames else frames[-1]] += int(n)
    jit = ours["jitted_loop"] / (sum(ours.values()) or 1)
    assert jit >= perf_jit - JIT_POINTS, (f"ours {jit:.3f}, perf {perf_jit:.3f}",
                                      ours.most_common(6), theirs.most_common(6))
