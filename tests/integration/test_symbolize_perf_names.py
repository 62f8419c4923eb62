"""Names against perf on the same samples: `perf record -g`, then every user frame perf names
in a file must get the same name from us (perf_oracle.py builds the recording from perf's own
addresses). Programs nobody here wrote (GNU sort) and small ones built here for PLT stubs,
glibc's aliases and signal frames."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.perf_oracle import (
    differences,
    our_names,
    perf_record,
    perf_script,
    perf_unavailable_reason,
    recording_from_perf,
)

pytestmark = pytest.mark.skipif(perf_unavailable_reason() is not None,
                                reason=perf_unavailable_reason() or "")

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
CLOCK = r"""
#include <math.h>
#include <stdio.h>
#include <time.h>
volatile double acc;
__attribute__((noinline)) void work(void) {
    struct timespec ts;
    for (long i = 0; i < 3000000; i++) { clock_gettime(CLOCK_MONOTONIC, &ts); acc += cos(i); }
}
int main(void) { work(); printf("%f\n", acc); return 0; }
"""
SIGPROF = r"""
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
volatile unsigned long sink;
/* ~0.3-1 ms per 2 ms SIGPROF period (0.3-1 ns an iteration on the hosts seen): a sixth to a
   third of the samples; 100,000 iterations were 1.5% here, and one perf run caught none */
__attribute__((noinline)) void in_handler(void) { for (int i = 0; i < 1000000; i++) sink += i; }
void handler(int s) { (void)s; in_handler(); }
__attribute__((noinline)) void busy(void) { for (int i = 0; i < 1000; i++) sink ^= i; }
int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = handler;
    sigaction(SIGPROF, &sa, 0);
    struct itimerval it = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_PROF, &it, 0);
    for (long k = 0; k < 1500000; k++) busy();
    printf("%lu\n", sink);
    return 0;
}
"""
FP_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer",
            "-fno-optimize-sibling-calls", "-fno-inline"]


def build(tmp_path: Path, name: str, source: str, flags: list[str]) -> Path:
    (tmp_path / f"{name}.c").write_text(source)
    subprocess.run(["gcc", *flags, "-o", str(tmp_path / name), str(tmp_path / f"{name}.c"),
                    "-lm"], check=True)
    return tmp_path / name


def perf_version() -> tuple[int, int]:
    out = subprocess.run(["perf", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def irelative_plt(path: str) -> tuple[int, int] | None:
    """The .plt of an object whose .rela.plt has IRELATIVE entries: perf before 6.3 names
    its stubs in unsorted relocation order (upstream "perf symbols: Sort plt relocations"),
    so a frame there is not compared against it (test_symbolizer_plt.py checks those stubs
    against objdump)."""
    rel = subprocess.run(["readelf", "-rW", path], capture_output=True, text=True).stdout
    if "IRELATIVE" not in rel.split(".rela.plt")[-1]:
        return None
    sec = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True).stdout
    m = re.search(r"\s\.plt\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", sec)
    return (int(m.group(1), 16), int(m.group(1), 16) + int(m.group(2), 16)) if m else None


def compare(tmp_path: Path, cmd: list[str], *, cwd: Path | None = None) -> tuple[
        dict, dict, list[str]]:
    data = perf_record(cmd, tmp_path / "perf.data", cwd=cwd)
    run = perf_script(data)
    assert run.samples, "perf recorded no user frames"
    rec, expected = recording_from_perf(run, tmp_path / "rec.parquet")
    plt = irelative_plt(LIBC) if perf_version() < (6, 3) else None
    if plt is not None:
        libc = [(start, off) for maps in run.mmaps.values() for start, _n, off, p in maps
                if p == LIBC]
        expected = {k: v for k, v in expected.items()
                    if not any(plt[0] <= k[1] - start + off < plt[1] for start, off in libc)}
    got = our_names(rec)
    if perf_version() < (6, 3):
        # perf before 6.3 stretches an unstripped binary's zero-size `_init` over its PLT
        # (fixed upstream by synthesizing `sym@plt`); those stubs are checked against objdump
        # in tests/integration/test_symbolizer_plt.py instead. The same goes for the PLT's
        # header (PLT0, the lazy binder's trampoline), which we name `.plt`: a sample there
        # is rare, so this showed in one full run of many.
        expected = {k: v for k, v in expected.items()
                    if not ("_init" in v and any(n.endswith("@plt") or n == ".plt"
                                                 for n in got.get(k, ())))}
    # ld.so's `_start` calls `_dl_start`, and the return address is where the label
    # `_dl_start_user` begins (sysdeps/x86_64/dl-machine.h, RTLD_START): perf -g looks a
    # return address up as it is and prints the label; we look up the call (address - 1),
    # inside `_start`. A process sampled during its start shows it.
    expected = {k: v for k, v in expected.items()
                if not (v == {"_dl_start_user"} and got.get(k) == {"_start"})}
    return expected, got, differences(expected, got)


@pytest.mark.timeout(240)
def test_sort_names_and_plt_stubs_as_perf(tmp_path):
    """GNU sort, stripped: perf names its PLT leaves `memcmp@plt`, `strcoll@plt` (3.4% of
    sort's samples were `sort+0x3070` before)."""
    nums = tmp_path / "nums.txt"
    nums.write_text("".join(f"{(i * 7919) % 1000003}\n" for i in range(600000)))
    expected, got, diffs = compare(tmp_path, ["sort", str(nums)])
    assert diffs == []
    plt = {n for names in expected.values() for n in names if n.endswith("@plt")}
    assert plt & {"memcmp@plt", "strcoll@plt", "__errno_location@plt"}, plt
    assert len(expected) >= 20 and len(got) >= len(expected)


@pytest.mark.timeout(240)
def test_glibc_alias_names_as_perf(tmp_path):
    """clock_gettime has four names at one address in glibc's .symtab; perf (and we) print
    clock_gettime@@GLIBC_2.17, and the root __libc_start_main@@GLIBC_2.34 (perf -g shows
    __libc_start_call_main; both are compared where they occur)."""
    exe = build(tmp_path, "clock", CLOCK, FP_FLAGS)
    expected, _got, diffs = compare(tmp_path, [str(exe)])
    assert diffs == []
    names = {n for v in expected.values() for n in v}
    if not any(n.startswith("clock_gettime@@") for n in names):
        pytest.skip("glibc without a versioned .symtab here (libc6-dbg not installed)")
    assert "clock_gettime@@GLIBC_2.17" in names


@pytest.mark.timeout(240)
def test_signal_trampoline_as_perf_frame_pointer_mode(tmp_path):
    """SIGPROF every 2 ms of CPU time, the handler with frame pointers: the kernel's walk
    gives the handler's return address, __restore_rt's first byte; perf prints
    `__restore_rt`, where addr - 1 gave `libc.so.6+0x3c04f` (26% of such a program's
    samples)."""
    exe = build(tmp_path, "sigprof", SIGPROF, FP_FLAGS)
    expected, got, diffs = compare(tmp_path, [str(exe)])
    assert diffs == []
    assert any("__restore_rt" in v for v in expected.values()), "no sample in the handler"
    assert not any(re.match(r"libc\.so\.6\+0x", n) for v in got.values() for n in v)


@pytest.mark.bpf
@pytest.mark.timeout(300)
def test_signal_frames_unwound_by_dwarf_as_perf(tmp_path, capsys):
    """The same SIGPROF program without frame pointers, recorded by ebpf-record (DWARF in
    BPF, signal_step) and by `perf record --call-graph dwarf`: the interrupted functions
    under the trampoline are the ones perf shows there, and nothing is `libc.so.6+0x...`.
    perf's libdw unwinding looks the trampoline up at addr - 1 (`[unknown]`); we print
    `__restore_rt` as its frame-pointer mode does."""
    from cli_common.command import run as run_cli
    from symbolizer.cli import symbolize_main
    from tests.conftest import tool

    exe = build(tmp_path, "sigprof", SIGPROF, ["-O2", "-g"])
    data = perf_record([str(exe)], tmp_path / "perf.data", call_graph="dwarf")
    perf_under: set[str] = set()
    for s in perf_script(data).samples:
        names = [n for _a, n, _d in s.frames]
        if "in_handler" in names:
            after = names[names.index("in_handler") + 1:]
            # the trampoline's entry, then the interrupted frame
            if len(after) >= 2 and after[0] in ("[unknown]", "__restore_rt"):
                perf_under.add(after[1])
    assert "busy" in perf_under, perf_under

    rec = tmp_path / "rec.parquet"
    subprocess.run([tool("ebpf-record"), "--out", str(rec), "--sample-rate", "499", "--",
                    str(exe)], check=True, timeout=120, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    assert run_cli("ebpf-symbolize", symbolize_main,
                   [str(rec), "--cache-dir", str(tmp_path / "c")]) == 0
    folded = capsys.readouterr().out
    ours_under, main_calls = set(), set()
    for line in folded.splitlines():
        frames = line.rsplit(" ", 1)[0].split(";")
        if "__restore_rt" in frames and "in_handler" in frames:
            interrupted = frames[:frames.index("__restore_rt")]
            ours_under.add(interrupted[-1])
            # what main was in when the signal came: a sample at 499 Hz can catch the rare
            # signal in printf's or setitimer's libc code, which perf's fewer samples miss
            assert "main" in interrupted, line
            callee = interrupted[interrupted.index("main") + 1:]
            main_calls.add(callee[0] if callee else "main")
            if not callee or callee[0] == "busy":  # in our code: the frame perf shows there
                assert interrupted[-1] in perf_under | {"main"}, (line, perf_under)
    assert "busy" in ours_under, (ours_under, perf_under)
    assert main_calls <= {"main", "busy", "printf", "setitimer"}, (main_calls, perf_under)
    assert not re.search(r"libc\.so\.6\+0x", folded), folded


CLONES = r"""
#include <cstdio>
#include <vector>
struct Big { long a[8]; };
__attribute__((noinline)) static long sum_big(Big b, int unused) {
    long s = 0;
    for (int k = 0; k < 2000; k++) for (int i = 0; i < 8; i++) s += b.a[i] * k;
    return s;
}
__attribute__((noinline)) static long scaled(const std::vector<long> &v, long factor) {
    long s = 0;
    for (int r = 0; r < 50; r++) for (long x : v) s += x * factor + r;
    return s;
}
int main() {
    std::vector<long> v(20000, 3);
    Big b{};
    for (int i = 0; i < 8; i++) b.a[i] = i;
    long t = 0;
    for (int r = 0; r < 300; r++) {  // inputs change each round: no call is hoisted
        v[r % 20000] += t & 1;
        b.a[r % 8] += t & 3;
        t += scaled(v, 7);
        t += sum_big(b, r);
    }
    printf("%ld\n", t);
}
"""


@pytest.mark.timeout(240)
def test_lines_keeps_the_symbol_table_names(tmp_path):
    """With --lines the functions took DWARF's names (`scaled(...)` for GCC's clone
    `scaled(...) [clone .constprop.0]`, as `nm -C` names it), so a profile with --lines did
    not merge with one without. Now both name every frame alike, on perf's samples."""
    from symbolizer.options import SymbolizeOptions

    (tmp_path / "c.cc").write_text(CLONES)
    exe = tmp_path / "clones"
    subprocess.run(["g++", "-O2", "-g", "-fno-omit-frame-pointer", "-o", str(exe),
                    str(tmp_path / "c.cc")], check=True)
    nm = subprocess.run(["nm", "-C", str(exe)], capture_output=True, text=True).stdout
    clones = {line.split(" ", 2)[2] for line in nm.splitlines() if "[clone ." in line}
    assert clones, "the compiler made no clone of the test's functions"
    data = perf_record([str(exe)], tmp_path / "perf.data")
    rec, _expected = recording_from_perf(perf_script(data), tmp_path / "rec.parquet")
    without = our_names(rec)
    with_lines = our_names(rec, SymbolizeOptions(cache_dir=None, lines=True))
    assert with_lines == without
    assert clones & {n for v in with_lines.values() for n in v}, clones
