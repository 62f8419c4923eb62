"""How a Python frame is encoded in a recorded user stack (written by bpf/profile.c).

A Python frame takes two consecutive entries of `user_stack` (leaf first):
  A = PY_FRAME_TAG | code_addr      the PyCodeObject's address (below 2^48)
  B = checksum << 32 | instr_index  instr_index: the current instruction in 2-byte code units;
                                    checksum: (co_firstlineno + (co_argcount << 20)) & 0xffffffff
No user-space address has 0xC0 in its top byte (x86-64 user space ends at 2^47, at 2^56 with
5-level paging), so A cannot be mistaken for a native return address. The pair sits just
before (leaf side of) the native `_PyEval_EvalFrameDefault` frame that ran it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

PY_FRAME_TAG = 0xC0DE000000000000
PY_FRAME_TAG_MASK = 0xFFFF000000000000
CODE_ADDR_MASK = (1 << 48) - 1
NO_INSTRUCTION = 0xFFFFFFFF  # a frame that has not started (f_lasti -1, prev_instr before code)


def is_code_entry(value: int) -> bool:
    return value & PY_FRAME_TAG_MASK == PY_FRAME_TAG


def all_native(stack: Sequence[int]) -> bool:
    """True when no entry can be a Python frame: every value is below the tag (one pass at C
    speed, where is_code_entry per entry is a Python call; most stacks of a host are native)."""
    return not stack or max(stack) < PY_FRAME_TAG


def code_checksum(firstlineno: int, argcount: int) -> int:
    return (firstlineno + (argcount << 20)) & 0xFFFFFFFF


def encode_frame(code_addr: int, checksum: int, instr_index: int) -> tuple[int, int]:
    """The (A, B) pair of one frame (tests build synthetic stacks with this)."""
    return (PY_FRAME_TAG | (code_addr & CODE_ADDR_MASK),
            (checksum & 0xFFFFFFFF) << 32 | (instr_index & 0xFFFFFFFF))


def decode_pair(a: int, b: int) -> tuple[int, int, int]:
    """(code_addr, checksum, instr_index) of an (A, B) pair."""
    return a & CODE_ADDR_MASK, b >> 32 & 0xFFFFFFFF, b & 0xFFFFFFFF


def code_objects(user_stack: list[int]) -> list[tuple[int, int]]:
    """(code_addr, checksum) of every Python frame of a stack: what the recorder reads."""
    out = []
    i, n = 0, len(user_stack)
    while i < n:
        if is_code_entry(user_stack[i]) and i + 1 < n:
            addr, checksum, _ = decode_pair(user_stack[i], user_stack[i + 1])
            out.append((addr, checksum))
            i += 2
        else:
            i += 1
    return out


def native_entries(stack: Sequence[int]) -> Iterator[tuple[int, bool]]:
    """(address, is_return) of the native entries of a leaf-first stack. Only the first
    native entry is the sampled instruction; Python pairs before it do not change that."""
    i, n, first = 0, len(stack), True
    while i < n:
        v = stack[i]
        if is_code_entry(v) and i + 1 < n:
            i += 2
            continue
        yield v, not first
        first = False
        i += 1
