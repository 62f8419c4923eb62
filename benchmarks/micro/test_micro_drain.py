"""The recorder's drain of 1,000 unique stacks: recorder/bpf_program.py ProfileProgram.drain()
decoding the raw batch bytes the BPF maps give (struct key_t counts, struct stack_t stacks).

drain() reads the maps itself (BatchDrainer, bcc) and sleeps 2 ms after flipping the buffers;
its decoding is not a function of its own. So the benchmark runs the real drain() on a
ProfileProgram without a kernel: its map drainers are replaced by ones that hand out the same
synthetic bytes each time, the control map by a stub, and its 2 ms sleep by nothing. Splitting
the decoding out of drain() (a pure `decode(count_chunks, stack_chunks)`) would let it be
benchmarked without these stand-ins.
"""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace

import pytest

from recorder import bpf_program
from recorder.bpf_program import _KEY, _STACK_SIZE, ProfileProgram

STACKS = 1000
KERNEL_SHARE = 0.3
COUNTS_CHUNK, STACKS_CHUNK = 4096, 1024  # what ProfileProgram's BatchDrainers ask for


class _Chunks:
    """A BatchDrainer stand-in: the same (keys, values, count) chunks at every drain()."""

    def __init__(self, chunks: list[tuple[bytes, bytes, int]]) -> None:
        self.chunks = chunks

    def drain(self):
        return iter(self.chunks)


class _Control:
    def __setitem__(self, key, value) -> None:
        pass


def _chunked(keys: list[bytes], values: list[bytes], per: int) -> list[tuple[bytes, bytes, int]]:
    return [(b"".join(keys[i:i + per]), b"".join(values[i:i + per]), len(keys[i:i + per]))
            for i in range(0, len(keys), per)]


def synthetic_maps(n: int, seed: int = 1) -> tuple[_Chunks, _Chunks]:
    """n count entries, each with its own user stack (8-60 frames) and, for some, a kernel
    stack: the bytes of bpf/profile.c's counts and stacks maps."""
    rng = random.Random(seed)
    count_keys, count_values, stack_keys, stack_values = [], [], [], []
    for i in range(n):
        uhash = 0x1000_0000 + i
        khash = 0x2000_0000 + i if rng.random() < KERNEL_SHARE else 0
        count_keys.append(_KEY.pack(1000 + i % 50, 1, 1, 0, 0, 0, uhash, khash,
                                    f"proc-{i % 50}".encode()))
        count_values.append(struct.pack("<Q", rng.randint(1, 100)))
        for h, base, depth in ((uhash, 0x5555_0000_0000, rng.randint(8, 60)),
                               (khash, 0xFFFF_FFFF_8100_0000, rng.randint(5, 20))):
            if not h:
                continue
            frames = [base + rng.randrange(1 << 20) for _ in range(depth)]
            raw = struct.pack(f"<Q{depth}Q", depth, *frames)
            stack_keys.append(struct.pack("<Q", h))
            stack_values.append(raw + b"\0" * (_STACK_SIZE - len(raw)))
    return (_Chunks(_chunked(count_keys, count_values, COUNTS_CHUNK)),
            _Chunks(_chunked(stack_keys, stack_values, STACKS_CHUNK)))


@pytest.fixture
def program(monkeypatch) -> ProfileProgram:
    counts, stacks = synthetic_maps(STACKS)
    prog = ProfileProgram.__new__(ProfileProgram)  # no bcc, no kernel: see the docstring
    prog.active = 0
    prog.bpf = {"control": _Control()}
    prog._counts = [counts, counts]
    prog._stacks = [stacks, stacks]
    monkeypatch.setattr(bpf_program, "time", SimpleNamespace(sleep=lambda _s: None))
    return prog


def test_drain_1000_unique_stacks(benchmark, program):
    out = benchmark(program.drain)
    assert len(out) == STACKS
    assert len({s.user_stack for s in out}) == STACKS
    assert all(8 <= len(s.user_stack) <= 60 and s.user_stack_error is None for s in out)
    assert sum(1 for s in out if s.kernel_stack) == pytest.approx(KERNEL_SHARE * STACKS, rel=0.2)
