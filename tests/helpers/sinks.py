"""Synthetic Profiles with known totals, for the sink tests and the golden files: one
executable and one library at fixed build IDs and bases, two windows, inlined, recursive,
kernel and unresolved frames."""

from __future__ import annotations

import io
from collections import Counter

from profiles.model import Frame, FrameKind, MappingInfo, Profile, Stack
from symbolizer.sinks import pprof

EXE = "/opt/app/workload-pie"
EXE_BID = "1f2e3d4c5b6a79880716253443526170ffeeddcc"
LIB = "/opt/app/libfixture.so"
LIB_BID = "aabbccddeeff00112233445566778899aabbccdd"
EXE_BASE = 0x5555_5555_4000
LIB_BASE = 0x7F00_0000_0000
# The executable mappings as a recording has them (/proc/PID/maps): the PIE's text segment
# at file offset 0x1000 (ELF vaddr == offset), the library mapped whole from offset 0.
EXE_MAP = MappingInfo(EXE_BASE + 0x1000, EXE_BASE + 0x2000, 0x1000, EXE, EXE_BID)
LIB_MAP = MappingInfo(LIB_BASE, LIB_BASE + 0x2000, 0, LIB, LIB_BID)
START_NS = 1_764_057_600_000_000_000
WINDOW_NS = 10_000_000_000


def user(name: str, elf: int, *, lib: bool = False, line: int | None = None,
         inlined: bool = False, file: str | None = None) -> Frame:
    base, obj, bid, m = (LIB_BASE, LIB, LIB_BID, LIB_MAP) if lib else (
        EXE_BASE, EXE, EXE_BID, EXE_MAP)
    return Frame(
        name=name, kind=FrameKind.USER, address=base + elf, object=obj, build_id=bid,
        elf_addr=elf, file=file or ("fixture_lib.c" if lib else "workload.c"), line=line,
        inlined=inlined, mapping=m,
    )


def kernel(name: str, addr: int) -> Frame:
    return Frame(name=name, kind=FrameKind.KERNEL, address=addr, object="[kernel.kallsyms]")


def root(comm: str) -> Frame:
    return Frame(name=comm, kind=FrameKind.ROOT)


MAIN = user("main", 0x12AE + 0x20, line=70)
RUN = user("run_rounds", 0x1257 + 0x10, line=52)
ALPHA = user("alpha", 0x11F1 + 0x8, line=24)
GAMMA = user("gamma_fn", 0x1224 + 0x8, line=31)
BETA = user("lib_beta", 0x1109 + 0x8, lib=True, line=8)
UNRESOLVED = Frame(
    name="libfixture.so+0x2a0", address=LIB_BASE + 0x2A0, object=LIB, build_id=LIB_BID,
    elf_addr=0x2A0, reason="no symbol covers the address", mapping=LIB_MAP,
)
# run_rounds -> (inlined) helper -> (inlined) inner_helper at one address.
INL_OUTER = user("run_rounds", 0x1290, line=53)
INL_MID = user("helper", 0x1290, line=12, inlined=True, file="helper.h")
INL_INNER = user("inner_helper", 0x1290, line=5, inlined=True, file="helper.h")
RECURSE = user("recurse", 0x1300, line=40)
KSYS = kernel("entry_SYSCALL_64_after_hwframe", 0xFFFF_FFFF_8100_0100)
KCLOCK = kernel("__x64_sys_clock_gettime", 0xFFFF_FFFF_8120_0040)


def first_window() -> Profile:
    p = Profile(start_ns=START_NS, end_ns=START_NS + WINDOW_NS, sample_rate=100,
                labels={"pid": "4242"})
    w = root("workload")
    p.add((w, MAIN, RUN, ALPHA), 250)
    p.add((w, MAIN, RUN, BETA), 500)
    p.add((w, MAIN, RUN, GAMMA), 240)
    p.add((w, MAIN, RUN, BETA, UNRESOLVED), 3)
    p.add((w, MAIN, RUN, KSYS, KCLOCK), 5)
    p.add((w, MAIN, INL_OUTER, INL_MID, INL_INNER), 7)
    p.add((w, MAIN, RECURSE, RECURSE, RECURSE), 4)
    p.add((root("swapper/0"), Frame(name="[unknown]", reason="object unknown")), 1)
    return p


def second_window() -> Profile:
    p = Profile(start_ns=START_NS + WINDOW_NS, end_ns=START_NS + 2 * WINDOW_NS,
                sample_rate=100, labels={"pid": "4243"})
    w = root("workload")
    p.add((w, MAIN, RUN, ALPHA), 100)
    p.add((w, MAIN, RUN, BETA), 200)
    return p


def synthetic_profiles() -> list[Profile]:
    return [first_window(), second_window()]


def folded_lines(profiles: list[Profile]) -> Counter[str]:
    """Folded text as `comm;root;...;leaf` -> count: what the folded sink writes."""
    out: Counter[str] = Counter()
    for p in profiles:
        for stack, count in p.stacks.items():
            out[";".join(f.name for f in stack)] += count
    return out


def self_and_total(profiles: list[Profile]) -> tuple[Counter[str], Counter[str]]:
    """Per function name: self (leaf) samples and total (on stack, once per stack) samples."""
    flat: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    for p in profiles:
        for stack, count in p.stacks.items():
            flat[stack[-1].name] += count
            for name in {f.name for f in stack}:
                cum[name] += count
    return flat, cum


def stack_names(stack: Stack) -> list[str]:
    return [f.name for f in stack]


def pprof_bytes(profiles) -> bytes:
    """What the pprof sink writes for these profiles (gzipped protobuf)."""
    buf = io.BytesIO()
    pprof.write(profiles, buf)
    return buf.getvalue()
