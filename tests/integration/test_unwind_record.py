"""ebpf-record's BPF unwinder (`--call-graph dwarf`, the default) on code without frame
pointers, end to end: record, symbolize, check whole caller chains (issue 10's "Done when").

Shares, not counts, so a loaded machine (fewer samples, tables loading late) changes nothing:
the samples of a process's first drain window are left out where a test asks for complete
stacks, since a process sampled before its unwind tables reach the kernel is walked by frame
pointers (docs/recording-format.md, `user_unwinder` = fp).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import tool
from tests.helpers.workload_times import assert_shares_as_measured
from tests.integration import debian_workloads
from tests.integration.recorded_stacks import UserStack, reaches_entry, user_stacks
from tests.integration.test_record import (
    record,
    rows,
    wait_until_sampling,
)

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

ENTRY_SHARE = 0.95
# Fixed work for the fixture workload, ~3.5 s of CPU (the rounds_for fixture): the design
# shares are measured on enough samples however loaded the machine is.
WORK_SECONDS = 3.5


def recorded_stacks(out: Path) -> list[UserStack]:
    return list(user_stacks(str(out)))


def after_first_window(stacks: list[UserStack]) -> list[UserStack]:
    """Stacks of each process from its second drain window on (its first samples may come
    before its tables are loaded)."""
    first: dict[int, int] = {}
    for s in stacks:
        first[s.pid] = min(first.get(s.pid, s.window_start_ns), s.window_start_ns)
    return [s for s in stacks if s.window_start_ns > first[s.pid]]


def entry_share(stacks: list[UserStack]) -> tuple[float, int, list[tuple[str, int]]]:
    """Share of samples reaching the entry, the samples, and the commonest that do not."""
    total = sum(s.count for s in stacks)
    short: Counter[str] = Counter()
    for s in stacks:
        if not reaches_entry(s.frames):
            short[f"{s.unwinder}/{s.stop}: {';'.join(s.frames[-8:])}"] += s.count
    reached = total - sum(short.values())
    return (reached / total if total else 0.0), total, short.most_common(5)


def chain_counts(stacks: list[UserStack], chain: tuple[str, ...]) -> Counter[str]:
    """Samples per leaf whose stack starts at the entry and ends with chain + leaf."""
    got: Counter[str] = Counter()
    for s in stacks:
        if reaches_entry(s.frames) and s.frames[-len(chain) - 1:-1] == chain:
            got[s.frames[-1]] += s.count
    return got


def libc_symbol(name: str) -> int:
    """st_value of a libc function from its debug file (libc6-dbg): __restore_rt is local."""
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    note = subprocess.run(["readelf", "-n", libc], capture_output=True, text=True).stdout
    bid = re.search(r"Build ID: ([0-9a-f]+)", note).group(1)
    debug = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug")
    if not debug.exists():
        pytest.skip(f"needs libc6-dbg ({debug} is missing)")
    syms = subprocess.run(["readelf", "-sW", str(debug)], capture_output=True,
                          text=True).stdout
    m = re.search(rf"^\s*\d+: ([0-9a-f]+)\s+\d+ FUNC\s+\w+\s+\w+\s+\d+ {name}$", syms, re.M)
    assert m, f"{name} is not in {debug}"
    return int(m.group(1), 16)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    return debian_workloads.write_text(tmp_path_factory.mktemp("text") / "text.txt")


# -- (a) the fixtures without frame pointers --------------------------------------------------
def test_nofp_fixture_gives_the_design_shares_through_its_callers(fixture_bins, rounds_for,
                                                                 tmp_path, workload_times):
    out = tmp_path / "run.parquet"
    r = record(["--out", str(out), "--", str(fixture_bins / "workload-nofp"), "0"],
               env=workload_times.env(WORKLOAD_ROUNDS=rounds_for(WORK_SECONDS)))
    assert r.returncode == 0, r.stderr
    stacks = recorded_stacks(out)
    assert sum(s.count for s in stacks) > 150
    assert_shares_as_measured(chain_counts(stacks, ("main", "run_rounds")),
                              sum(s.count for s in stacks), workload_times)
    share, total, short = entry_share(after_first_window(stacks))
    assert share >= ENTRY_SHARE, (total, short)
    # the entry is reached through glibc's start: _start -> ... -> __libc_start_call_main
    roots = Counter(s.frames[:3] for s in stacks if reaches_entry(s.frames))
    assert roots.most_common(1)[0][0] == ("_start", "__libc_start_main",
                                          "__libc_start_call_main"), roots
    # by the BPF unwinder alone once the tables are in (in the first window a sample may
    # meet libc before its table arrives, and finish by frame pointers: dwarf+fp)
    assert {s.unwinder for s in after_first_window(stacks)
            if reaches_entry(s.frames)} <= {"dwarf", "dwarf+copy"}


# -- (b) Debian's own programs -----------------------------------------------------------------
@pytest.mark.parametrize("program", debian_workloads.PROGRAMS)
def test_debian_programs_reach_their_entry(program, text_file, tmp_path):
    cmd = debian_workloads.commands(text_file, tmp_path)[program]
    if not shutil.which(cmd[0]):
        pytest.skip(f"{cmd[0]} is not installed")
    out = tmp_path / "run.parquet"
    r = subprocess.run([tool("ebpf-record"), "--no-progress", "--out", str(out), "--", *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    stacks = recorded_stacks(out)
    counted = after_first_window(stacks)
    share, total, short = entry_share(counted)
    assert total >= 100, f"only {total} samples after the first window: {r.stderr}"
    assert share >= ENTRY_SHARE, (f"{share:.3f} of {total}", short)


# -- (c) through a signal frame ----------------------------------------------------------------
def handler_stacks(fixture_bins: Path, tmp_path: Path) -> list[UserStack]:
    out = tmp_path / "run.parquet"
    r = record(["--out", str(out), "--", str(fixture_bins / "sigprof-nofp"), "4"])
    assert r.returncode == 0, r.stderr
    stacks = after_first_window(recorded_stacks(out))
    total = sum(s.count for s in stacks)
    in_handler = [s for s in stacks if "on_sigprof" in s.frames]
    # by design ~3/4 of the CPU time is in the handler
    assert sum(s.count for s in in_handler) >= 0.5 * total, Counter(
        s.leaf for s in stacks)
    return in_handler


def test_stacks_in_a_signal_handler_continue_through_restore_rt_to_main(fixture_bins,
                                                                        tmp_path):
    restore_rt = libc_symbol("__restore_rt")
    in_handler = handler_stacks(fixture_bins, tmp_path)
    total = sum(s.count for s in in_handler)
    good = 0
    for s in in_handler:
        i = s.frames.index("on_sigprof")
        obj, addr = s.where[i - 1]  # the handler's caller: the kernel's return trampoline
        # the symbolizer looks the trampoline up at its own address (symbolizer/sigframes.py),
        # older ones at the return address - 1
        through = (obj is not None and Path(obj).name == "libc.so.6" and addr is not None
                   and addr in (restore_rt, restore_rt - 1))
        below = s.frames[:i - 1]
        if through and reaches_entry(below) and below[3:5] == ("main", "main_loop"):
            good += s.count
    assert good >= ENTRY_SHARE * total, [
        (s.count, s.frames, s.where) for s in in_handler][:5]


def test_the_signal_trampoline_is_named(fixture_bins, tmp_path):
    in_handler = handler_stacks(fixture_bins, tmp_path)
    named = sum(s.count for s in in_handler
                if s.frames[s.frames.index("on_sigprof") - 1] == "__restore_rt")
    assert named >= ENTRY_SHARE * sum(s.count for s in in_handler)


# -- (d) frame pointers on request -------------------------------------------------------------
def test_call_graph_fp_walks_frame_pointers_in_the_kernel(fixture_bins, rounds_for, tmp_path,
                                                          workload_times):
    out = tmp_path / "run.parquet"
    r = record(["--out", str(out), "--call-graph", "fp", "--",
                str(fixture_bins / "workload-pie"), "0"],
               env=workload_times.env(WORKLOAD_ROUNDS=rounds_for(WORK_SECONDS)))
    assert r.returncode == 0, r.stderr
    samples = [s for s in rows(out, "sample") if s["user_stack"]]
    assert {s["user_unwinder"] for s in samples} == {"kernel-fp"}
    assert {s["user_stop"] for s in samples} <= {"fp-end", "depth"}
    stats = {s["key"]: s["value"] for s in rows(out, "stats")}
    assert stats["call_graph"] == "fp"
    assert "unwind_objects" not in stats  # no tables are built for the fp walk
    # the fixture has frame pointers: its callers are there (glibc's start, which has none,
    # may end the chain anywhere below main)
    stacks = recorded_stacks(out)
    total = sum(s.count for s in stacks)
    got: Counter[str] = Counter()
    for s in stacks:
        if s.frames[-3:-1] == ("main", "run_rounds"):
            got[s.frames[-1]] += s.count
    assert_shares_as_measured(got, total, workload_times)


# -- (e) the unwinder counters -----------------------------------------------------------------
def record_system_wide(fixture_bins: Path, out: Path, rounds: str) -> int:
    """A system-wide recording while workload-nofp does `rounds` rounds (~1.5 s of CPU,
    however long that takes); the workload's pid."""
    rec = subprocess.Popen([tool("ebpf-record"), "--no-progress", "--out", str(out)],
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_until_sampling(rec)
        subprocess.run([str(fixture_bins / "workload-nofp"), "0"], check=True,
                       env={**os.environ, "WORKLOAD_ROUNDS": rounds})
        time.sleep(1)  # a window after the workload's last
    finally:
        rec.send_signal(signal.SIGINT)
    _, err = rec.communicate(timeout=120)
    assert rec.returncode == 0, err
    return _pid_of(out, str(fixture_bins / "workload-nofp"))


def unwound_stats(stats: dict[str, str]) -> dict[str, int]:
    return {k.removeprefix("samples_unwound_"): int(v) for k, v in stats.items()
            if k.startswith("samples_unwound_")}


def _pid_of(out: Path, exe: str) -> int:
    pids = {p["pid"] for p in rows(out, "process") if p["exe"] == exe}
    assert len(pids) == 1, pids
    return pids.pop()


def test_samples_unwound_stats_add_up_to_the_samples_with_user_stacks(fixture_bins,
                                                                      rounds_for, tmp_path):
    """System-wide, so kernel threads (no user stack) and every unwinder outcome occur."""
    out = tmp_path / "run.parquet"
    pid = record_system_wide(fixture_bins, out, rounds_for(1.5))
    samples = rows(out, "sample")
    by_unwinder: Counter[str | None] = Counter()
    for s in samples:
        if s["user_stack"]:
            by_unwinder[s["user_unwinder"]] += s["count"]
        else:
            assert s["user_unwinder"] is None and s["user_stop"] is None, s
    stats = {s["key"]: s["value"] for s in rows(out, "stats")}
    unwound = unwound_stats(stats)
    # every stack names its unwinder, so the counters add up to the samples with stacks
    assert by_unwinder[None] == 0, by_unwinder
    assert unwound == dict(by_unwinder)
    assert sum(unwound.values()) == sum(s["count"] for s in samples if s["user_stack"])
    assert int(stats["samples"]) == sum(s["count"] for s in samples)
    assert sum(s["count"] for s in samples if s["pid"] == pid and s["user_stack"]) > 50


def test_system_wide_recording_unwinds_a_program_without_frame_pointers(fixture_bins,
                                                                       rounds_for, tmp_path):
    out = tmp_path / "run.parquet"
    pid = record_system_wide(fixture_bins, out, rounds_for(1.5))
    stats = {s["key"]: s["value"] for s in rows(out, "stats")}
    stacks = [s for s in recorded_stacks(out) if s.pid == pid]
    share, total, short = entry_share(after_first_window(stacks))
    tables = {k: v for k, v in stats.items() if k.startswith("unwind_")}
    assert share >= ENTRY_SHARE, (f"{share:.3f} of {total}", short, tables)
    assert int(stats["unwind_objects_over_capacity"]) == 0, tables


def test_a_stack_whose_first_step_fails_still_names_its_unwinder(fixture_bins, tmp_path):
    out = tmp_path / "run.parquet"
    spin = subprocess.Popen([str(fixture_bins / "badstack")])
    try:
        r = record(["--out", str(out), "--pid", str(spin.pid), "--duration", "3"])
    finally:
        spin.kill()
        spin.wait()
    assert r.returncode == 0, r.stderr
    samples = [s for s in rows(out, "sample") if s["user_stack"]]
    with_stack = sum(s["count"] for s in samples)
    assert with_stack > 50
    # every sample is the one frame at the spin loop, stopped by the fault of the first read
    assert {(len(s["user_stack"]), s["user_stop"]) for s in samples} == {(1, "read-fault")}
    assert {s["user_unwinder"] for s in samples} <= {"dwarf", "fp", "dwarf+fp", "dwarf+copy",
                                                     "fp+copy", "dwarf+fp+copy"}, samples
    stats = {s["key"]: s["value"] for s in rows(out, "stats")}
    assert sum(unwound_stats(stats).values()) == with_stack
