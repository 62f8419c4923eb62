"""Synthetic system-wide Profiles (no tests here): what `ebpf-record` without --pid gives.

`system_wide()` is the shape that made the old flame graph open on a blank screen: a few busy
processes, and many processes with a few samples whose stacks are towers of up to 127 frames
(MAX_STACK_DEPTH), in several drain windows. `many_stacks(n)` is a window of n unique stacks
over many processes, for size and speed measurements. Both are deterministic.
"""

from __future__ import annotations

import functools
import random

from profiles.model import Frame, FrameKind, Profile, Stack

T0 = 1_764_057_600_000_000_000
WINDOW_NS = 1_000_000_000  # ebpf-record's default drain interval
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBC_BID = "c2e9f4a7d0b3e6f1a4d7c0b3e6f9a2d5c8b1e4f7"
MAX_DEPTH = 127

# (comm, share of the busy samples, call chain from the process's entry, leaf functions)
BUSY = [
    ("postgres", 0.45, ["_start", "__libc_start_main", "main", "PostmasterMain", "ServerLoop",
                        "BackendStartup", "PostgresMain", "exec_simple_query",
                        "PortalRun", "ExecutorRun"],
     ["ExecScan", "heap_getnextslot", "hash_search", "slot_deform_heap_tuple"]),
    ("python3", 0.30, ["_start", "__libc_start_main", "Py_BytesMain", "Py_RunMain",
                       "_PyEval_EvalFrameDefault"],
     ["PyObject_GetAttr", "list_append", "dict_lookup", "long_add"]),
    ("gzip", 0.25, ["_start", "__libc_start_main", "main", "treat_file", "zip", "deflate"],
     ["longest_match", "fill_window", "send_bits"]),
]
KERNEL_TAIL = ["entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_read",
               "ksys_read", "vfs_read"]


# The symbolizer hands out one Frame object per distinct frame (resolve.py caches them by
# address), and the sinks rely on that for speed: so do these helpers.
@functools.cache
def _user(name: str, exe: str, *, lib: bool = False) -> Frame:
    obj, bid = (LIBC, LIBC_BID) if lib else (exe, None)
    return Frame(name=name, kind=FrameKind.USER, address=hash((name, exe)) & 0xFFFF_FFFF,
                 object=obj, build_id=bid)


@functools.cache
def _kernel(name: str) -> Frame:
    return Frame(name=name, kind=FrameKind.KERNEL, address=0xFFFF_FFFF_8100_0000)


@functools.cache
def _root(comm: str) -> Frame:
    return Frame(name=comm, kind=FrameKind.ROOT)


def _busy_stack(rng: random.Random, comm: str, chain: list[str], leaves: list[str]) -> Stack:
    exe = f"/usr/bin/{comm}"
    frames = [_root(comm)]
    frames += [_user(n, exe, lib=n == "__libc_start_main") for n in chain]
    frames.append(_user(rng.choice(leaves), exe))
    if rng.random() < 0.2:
        frames.append(_user("read", exe, lib=True))
        frames += [_kernel(n) for n in KERNEL_TAIL[: rng.randint(2, len(KERNEL_TAIL))]]
    return tuple(frames)


def _tower(rng: random.Random, comm: str) -> Stack:
    """A deep stack of a process sampled once: recursion down to the recorder's limit."""
    exe = f"/usr/bin/{comm}"
    depth = rng.randint(MAX_DEPTH - 40, MAX_DEPTH)
    frames = [_root(comm), _user("_start", exe), _user("__libc_start_main", exe, lib=True)]
    while len(frames) < depth:
        frames.append(_user(f"visit_{rng.randint(0, 5)}", exe))
    return tuple(frames)


def system_wide(windows: int = 3, busy_samples: int = 3000, small_processes: int = 150,
                seed: int = 13) -> list[Profile]:
    """Busy processes plus `small_processes` towers per window, one Profile per window."""
    rng = random.Random(seed)
    out = []
    for w in range(windows):
        p = Profile(start_ns=T0 + w * WINDOW_NS, end_ns=T0 + (w + 1) * WINDOW_NS,
                    sample_rate=100)
        for comm, share, chain, leaves in BUSY:
            for _ in range(int(busy_samples * share)):
                p.add(_busy_stack(rng, comm, chain, leaves), 1)
        for i in range(small_processes):
            # 5-10 of ~12,000 samples: wider than half a pixel (what the old page drew) and
            # narrower than 0.1% at 1400 px.
            p.add(_tower(rng, f"worker-{w}-{i}"), rng.randint(5, 10))
        out.append(p)
    return out


def many_stacks(n: int, windows: int = 1, processes: int = 300, seed: int = 7) -> list[Profile]:
    """`n` unique stacks in total, spread over `windows` windows: each process runs a random
    call tree (depth up to 60) over its own functions and libc's; counts are skewed."""
    rng = random.Random(seed)
    comms = [f"proc-{i}" for i in range(processes)]
    seen: set[Stack] = set()
    per_window = [Profile(start_ns=T0 + w * WINDOW_NS, end_ns=T0 + (w + 1) * WINDOW_NS,
                          sample_rate=100) for w in range(windows)]
    frames: dict[tuple[str, int], Frame] = {}

    def frame(comm: str, k: int) -> Frame:
        f = frames.get((comm, k))
        if f is None:
            lib = k % 5 == 0
            name = f"libc_fn_{k % 97}" if lib else f"{comm}_fn_{k}"
            f = frames[(comm, k)] = _user(name, f"/usr/bin/{comm}", lib=lib)
        return f

    while len(seen) < n:
        comm = comms[min(int(rng.paretovariate(1.2)) - 1, processes - 1)]
        depth = rng.randint(4, 60)
        # Child k of node j is function (j * 7 + k) % 400, mostly the first (a hot path):
        # long shared prefixes, as real call trees have.
        node, stack = 0, [_root(comm)]
        for _ in range(depth):
            r = rng.random()
            node = (node * 7 + (0 if r < 0.8 else 1 if r < 0.95 else 2)) % 400
            stack.append(frame(comm, node))
        if rng.random() < 0.3:
            stack += [_kernel(k) for k in KERNEL_TAIL[: rng.randint(2, len(KERNEL_TAIL))]]
        key = tuple(stack)
        if key in seen:
            continue
        seen.add(key)
        per_window[len(seen) % windows].add(key, min(int(rng.paretovariate(1.5)), 500))
    return per_window
