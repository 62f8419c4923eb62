"""recorder/python/memory.py: process_vm_readv reads, on this process's own memory."""

from __future__ import annotations

import ctypes
import os

from recorder.python.memory import ProcessMemory


def _buffer(data: bytes) -> tuple[ctypes.Array[ctypes.c_char], int]:
    buf = ctypes.create_string_buffer(data, len(data))
    return buf, ctypes.addressof(buf)


def test_read_many_takes_the_ranges_in_one_call_and_skips_what_fails():
    _a, a_addr = _buffer(b"alpha-16-bytes!!")
    _b, b_addr = _buffer(b"beta")
    mem = ProcessMemory(os.getpid())
    # the first page is never mapped: the call stops there, and the ranges after it are
    # asked for again
    got = mem.read_many([(a_addr, 16), (a_addr + 6, 2), (0x1000, 8), (b_addr, 4),
                         (b_addr, 0), (-5, 8)])
    assert got == [b"alpha-16-bytes!!", b"16", None, b"beta", None, None]
    assert mem.reads == 2 and mem.failed == 1  # sizes 0 and bad addresses: no call at all
    assert ProcessMemory(os.getpid()).read_many([]) == []


def test_read_many_refuses_what_read_refuses():
    _a, a_addr = _buffer(b"x" * 64)
    mem = ProcessMemory(os.getpid())
    assert mem.read_many([(a_addr, (1 << 20) + 1)]) == [None]  # over MAX_READ
    assert mem.read_many([(1 << 56, 8)]) == [None]
    assert mem.reads == 0
    assert mem.read_many([(a_addr, 64)]) == [b"x" * 64] and mem.read(a_addr, 64) == b"x" * 64
