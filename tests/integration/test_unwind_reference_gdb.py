"""The reference unwinder (unwind/reference.py, the BPF unwinder's twin) on real stacks,
against gdb's backtrace of the same stopped thread.

gdb stops a program (at breakpoints in the fixtures built without frame pointers, inside the
lazy PLT and ld.so's resolver, in a signal handler, or by attaching to python3.11, xz and sort
at arbitrary moments); tests/integration/gdb_capture.py saves its registers, the stack from
rsp - 128 (the red zone) to the end of its mapping (what a sampler copies), /proc/PID/maps
and gdb's frames. We
build the tables of every mapped object with unwind.cache.TableCache and unwind the copy.
gdb also unwinds from the objects' CFI, so the two must agree frame by frame: frame #0's pc,
then the return addresses (gdb's frame pc for callers is the resume address; after
<signal handler called>, the interrupted pc). Inline and tail-call frames, which gdb makes up
from debug info and a stack walk cannot see, are left out of gdb's list.

gdb is a test dependency like the BPF tests' kernel: without it (or without ptrace) these
skip with a reason, and fail instead when CI=true.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from recorder.procfs import parse_maps
from recording.elf import ElfError, elf_info_of_path, read_elf_info, vaddr_of_offset
from tests.conftest import in_ci
from unwind.cache import TableCache
from unwind.reference import ProcessTables, Regs, StackMemory, UnwindResult, unwind
from unwind.table import UnwindTable

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
CAPTURE = HERE / "gdb_capture.py"
PYTHON = "/usr/bin/python3.11"  # Debian's build: no frame pointers
GDB_TIMEOUT = 180
ENTRY_NAMES = {"_start", "__libc_start_call_main", "__libc_start_main", "__libc_start_main_impl",
               "start_thread", "clone3", "clone"}


def gdb_unavailable_reason() -> str | None:
    gdb = shutil.which("gdb")
    if gdb is None:
        return "needs gdb (Debian package gdb)"
    probe = subprocess.run([gdb, "-nx", "-batch", "-ex", "python import gdb"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or probe.stderr.strip():
        return f"gdb has no Python ({probe.stderr.strip()[:100]})"
    try:
        scope = int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        scope = 0
    if os.geteuid() != 0 and scope > 0:
        return "needs root or kernel.yama.ptrace_scope=0 to attach gdb to a running process"
    return None


@pytest.fixture(scope="module")
def gdb() -> str:
    reason = gdb_unavailable_reason()
    if reason:
        if in_ci():
            pytest.fail(f"gdb test cannot run in CI: {reason}")
        pytest.skip(reason)
    path = shutil.which("gdb")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> TableCache:
    return TableCache(str(tmp_path_factory.mktemp("unwind-cache")))


def run_gdb(gdb: str, out: Path, commands: list[str], target: list[str]) -> str:
    """gdb in batch mode with the capture script loaded; returns its output."""
    cmd = [gdb, "-nx", "-batch", "-iex", "set debuginfod enabled off", "-iex", "set auto-load off",
           "-iex", "set pagination off", "-ex", "set backtrace past-main on",
           "-ex", "set backtrace past-entry on", "-x", str(CAPTURE)]
    for c in commands:
        cmd += ["-ex", c]
    p = subprocess.run(cmd + target, env={**os.environ, "UNWIND_CAPTURE_DIR": str(out)},
                       capture_output=True, text=True, timeout=GDB_TIMEOUT)
    return p.stdout + p.stderr


def load(out: Path, name: str, log: str) -> dict:
    path = out / f"{name}.json"
    assert path.exists(), f"gdb captured no {name}:\n{log[-3000:]}"
    return json.loads(path.read_text())


def process_tables(cap: dict, cache: TableCache) -> ProcessTables:
    """The capture's executable mappings as the recorder gives them to the kernel
    (recorder/unwinder.py): bias from the PT_LOAD holding the mapping's offset."""
    entries: list[tuple[int, int, int, UnwindTable | None]] = []
    for m in parse_maps(cap["maps"]):
        table: UnwindTable | None = None
        loads = None
        try:
            if m.path == "[vdso]":  # no file: its bytes, as the recorder reads them
                data = bytes.fromhex(cap["vdso"])
                loads = read_elf_info(io.BytesIO(data), len(data)).loads
                fd = os.memfd_create("vdso", os.MFD_CLOEXEC)
                try:
                    os.write(fd, data)
                    got = cache.table_for(fd)
                finally:
                    os.close(fd)
            elif m.is_file:
                info = elf_info_of_path(m.path)
                loads = info.loads
                got = cache.table_for(m.path, info.build_id)
            else:
                got = None
        except (OSError, ElfError):
            got = None
        vaddr = vaddr_of_offset(loads, m.file_offset) if loads else None
        if isinstance(got, UnwindTable) and vaddr is not None:
            table = got
        entries.append((m.start, m.end, 0 if vaddr is None else m.start - vaddr, table))
    return ProcessTables(entries)


def gdb_frames(cap: dict) -> list[tuple[int, str | None]]:
    """gdb's frames a stack walk can see: not the inline and tail-call frames it makes up
    from DWARF debug info (DW_TAG_inlined_subroutine, DW_TAG_call_site)."""
    return [(f["pc"], f["name"]) for f in cap["frames"] if f["type"] not in cap["made_up"]]


def check(cap: dict, cache: TableCache) -> UnwindResult:
    """Assert our frames are gdb's; return our result."""
    regs = Regs(cap["regs"]["rip"], cap["regs"]["rsp"], cap["regs"]["rbp"])
    memory = StackMemory(cap["stack_base"], bytes.fromhex(cap["stack"]))
    got = unwind(regs, process_tables(cap, cache), memory.read_u64)
    want = gdb_frames(cap)
    n = max(len(got.frames), len(want))
    lines = [f"#{i:<3} ours {got.frames[i] if i < len(got.frames) else 0:#018x}  gdb "
             f"{want[i][0] if i < len(want) else 0:#018x} {want[i][1] if i < len(want) else ''}"
             for i in range(n)]
    report = f"stop {got.stop} ({got.unwinder}), gdb: {cap['stop']}\n" + "\n".join(lines)
    assert list(got.frames) == [pc for pc, _ in want][:127], report
    return got


def assert_reaches_entry(cap: dict, got: UnwindResult) -> None:
    names = [name for _, name in gdb_frames(cap)]
    assert got.stop == "entry", names
    assert ENTRY_NAMES & set(names[-3:]), names


# -- the fixtures without frame pointers, at chosen instructions --------------------------

NOFP_STOPS = [
    # (capture name, gdb commands that reach it)
    ("plt-entry", ["break *'lib_beta@plt'", "run"]),
    # lazy binding: jmp *GOT falls through to the entry's push (pc & 15 = 6, below T = 11),
    # then to the jmp to PLT0 after it (pc & 15 = 11: 8 more bytes on the stack)
    ("plt-push", ["stepi"]),
    ("plt-pushed", ["stepi"]),
    ("plt0", ["stepi"]),
    ("plt0-pushed", ["stepi"]),
    ("dl-resolve", ["stepi"]),
    ("lib-beta-entry", ["delete", "break *lib_beta", "continue"]),
    ("lib-beta-body", ["stepi 9"]),
    ("alpha", ["delete", "break alpha", "continue", "stepi 5"]),
    ("gamma", ["delete", "break gamma_fn", "continue"]),
    # the vDSO has no file: its table is built from its bytes, as the recorder does
    ("vdso-entry", ["delete", "break __vdso_clock_gettime", "continue"]),
    ("vdso-body", ["stepi 6"]),
]


def test_nofp_fixture_at_breakpoints_agrees_with_gdb(gdb, fixture_bins, cache, tmp_path):
    commands: list[str] = []
    for name, reach in NOFP_STOPS:
        commands += [*reach, f'python capture("{name}")']
    log = run_gdb(gdb, tmp_path, [*commands, "kill"],
                  ["--args", str(fixture_bins / "workload-nofp"), "30"])
    for name, _ in NOFP_STOPS:
        cap = load(tmp_path, name, log)
        got = check(cap, cache)
        assert_reaches_entry(cap, got)
        assert got.unwinder == "dwarf", (name, got)  # no frame pointer needed anywhere
        names = [n for _, n in gdb_frames(cap)]
        assert {"run_rounds", "main"} <= set(names), names


# -- a real signal frame (glibc's __restore_rt) ---------------------------------------------

SIGNAL_SOURCE = r"""
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
static volatile unsigned long spins;
__attribute__((noinline)) void handler_leaf(void) { for (;;) spins++; }
static void on_signal(int sig) { (void)sig; handler_leaf(); }
__attribute__((noinline)) void busy(void) { for (;;) spins += 3; }
/* die_before's call to abort is its last instruction, so its return address is
   trap_first's first byte, whose ud2 traps there: pc - 1 is die_before's (CFA = rsp + 16),
   pc is trap_first's (CFA = rsp + 8), and only the right rule gives gdb's stack */
__attribute__((noinline, noreturn)) void die_before(void) { abort(); }
__attribute__((noinline)) void trap_first(void) { __builtin_trap(); }
int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGALRM, &sa, 0);
    sigaction(SIGILL, &sa, 0);
    sigaction(SIGABRT, &sa, 0);
    if (argc > 1 && argv[1][0] == 't')
        trap_first();
    if (argc > 1 && argv[1][0] == 'd')
        die_before();
    struct itimerval t = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &t, 0);
    busy();
}
"""


@pytest.fixture(scope="module")
def signal_exe(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("signal")
    (d / "sig.c").write_text(SIGNAL_SOURCE)
    subprocess.run(["gcc", "-O1", "-g", "-fomit-frame-pointer", "-fno-inline",
                    "-fno-reorder-functions", "-Wl,--build-id=sha1", "-o", str(d / "sig-nofp"),
                    str(d / "sig.c")], check=True)
    return d / "sig-nofp"


def interrupted(cap: dict) -> tuple[int, str | None]:
    """gdb's frame below <signal handler called>: the interrupted pc."""
    kinds = [f["type"] for f in cap["frames"]]
    assert cap["sigtramp"] in kinds, kinds  # gdb saw the signal frame too
    f = cap["frames"][kinds.index(cap["sigtramp"]) + 1]
    return f["pc"], f["name"]


def assert_rule_changes_at(cap: dict, cache: TableCache, exe: Path, pc: int) -> None:
    """The test's premise: a row of `exe` starts at pc, and the row before it differs."""
    table = cache.table_for(str(exe))
    m = process_tables(cap, cache).find_mapping(pc)
    assert isinstance(table, UnwindTable) and m is not None
    row, before = table.lookup(pc - m.bias), table.lookup(pc - m.bias - 1)
    assert row is not None and row.pc == pc - m.bias and row != before, (row, before)


@pytest.mark.parametrize("mode", ["alarm", "trap", "die"])
def test_signal_handler_stack_agrees_with_gdb(gdb, cache, tmp_path, signal_exe, mode):
    # alarm: SIGALRM interrupts busy() anywhere; trap: SIGILL at trap_first's first byte
    # (exact pc after a signal frame); die: SIGABRT in abort(), called by die_before as its
    # last instruction (pc - 1 for a return address)
    commands = ["handle SIGILL nostop noprint pass", "handle SIGABRT nostop noprint pass",
                "break handler_leaf", "run", 'python capture("handler")', "stepi 3",
                'python capture("handler-body")', "kill"]
    log = run_gdb(gdb, tmp_path, commands, ["--args", str(signal_exe), mode])
    for name in ("handler", "handler-body"):
        cap = load(tmp_path, name, log)
        got = check(cap, cache)
        assert_reaches_entry(cap, got)
        pc, fn = interrupted(cap)
        if mode == "alarm":
            assert fn == "busy"
        elif mode == "trap":  # the exact-pc rule after a signal frame decides this stack
            assert fn == "trap_first"
            assert_rule_changes_at(cap, cache, signal_exe, pc)
        else:  # the pc - 1 rule for die_before's return address decides it
            ra = next(f_pc for f_pc, f_name in gdb_frames(cap) if f_name == "die_before")
            assert_rule_changes_at(cap, cache, signal_exe, ra)


# -- running programs, stopped at arbitrary moments ---------------------------------------

PY_RECURSION = """
def spin(n):
    if n == 0:
        while True:
            sum(i * i for i in range(200))
    # through C: sum() -> map's next -> the function, several C frames per level
    return sum(map(spin, [n - 1]))
spin(8)
"""


def attach_captures(gdb: str, cmd: list[str], out: Path, names: list[str],
                    warmup: float = 0.5, gap: float = 0.3) -> tuple[list[dict], str]:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    caps, logs = [], ""
    try:
        time.sleep(warmup)
        for name in names:
            assert proc.poll() is None, f"{cmd[0]} exited early ({proc.returncode})"
            log = run_gdb(gdb, out, [f'python capture("{name}")'], ["-p", str(proc.pid)])
            logs += log
            caps.append(load(out, name, log))
            time.sleep(gap)
    finally:
        proc.kill()
        proc.wait()
    return caps, logs


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    rnd = random.Random(10)
    path = tmp_path_factory.mktemp("input") / "lines.txt"
    path.write_text("".join(f"{rnd.getrandbits(64):016x} {i}\n" for i in range(400_000)))
    return path


def test_python311_stacks_agree_with_gdb_and_reach_the_entry(gdb, cache, tmp_path):
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(f"{PYTHON} (Debian's python3.11) is not installed")
    caps, _ = attach_captures(gdb, [PYTHON, "-c", PY_RECURSION], tmp_path,
                              ["py1", "py2", "py3"], warmup=1.0)
    for cap in caps:
        got = check(cap, cache)
        assert_reaches_entry(cap, got)
        assert len(got.frames) > 40  # the recursion through C is on the stack
        names = [n for _, n in gdb_frames(cap)]
        assert "_PyEval_EvalFrameDefault" in names and "Py_BytesMain" in names, names


@pytest.mark.parametrize("program", ["xz", "sort"])
def test_debian_tools_agree_with_gdb(gdb, cache, tmp_path, big_input, program):
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed")
    if program == "xz":
        cmd = [path, "-T1", "-9", "-c", str(big_input)]
    else:  # the input several times over: still sorting when the last capture is taken
        cmd = [path, "--parallel=1", "-S", "512M", *[str(big_input)] * 8]
    caps, _ = attach_captures(gdb, cmd, tmp_path, [f"{program}{i}" for i in range(3)])
    for cap in caps:
        got = check(cap, cache)
        assert got.frames and got.stop == "entry", got
