"""The `copies` ring records (bpf/profile.c struct copy_t) as the recorder parses them."""

import struct

from recorder.bpf_program import MAX_STACK_DEPTH
from recorder.stack_copies import _DATA_AT, _HEADER, CopyUnwinder, StackCopy, parse_copy
from unwind.reference import Regs
from unwind.table import UnwindTable


def record(kernel: list[int], data: bytes, kerr: int = 0) -> bytes:
    head = _HEADER.pack(4242, len(data), kerr, len(kernel), 0x401000, 0x7ffd0000, 0,
                        b"worker\0".ljust(16, b"\0"))
    frames = struct.pack(f"<{MAX_STACK_DEPTH}Q", *kernel, *[0] * (MAX_STACK_DEPTH - len(kernel)))
    return head + frames + data


def test_zero_kernel_entries_are_not_frames():
    # bpf_get_stack leaves a zero where the kernel's unwinder gave up; perf drops it too
    c = parse_copy(record([0xffffffff81000010, 0, 0xffffffff81000020], b"\x01" * 64))
    assert c is not None
    assert c.kernel == (0xffffffff81000010, 0xffffffff81000020)
    assert c.comm == "worker" and c.tgid == 4242
    assert c.data == b"\x01" * 64 and c.regs.sp == 0x7ffd0000


def test_data_is_cut_to_what_arrived_and_short_records_are_refused():
    raw = record([], b"\x02" * 32)
    c = parse_copy(raw[:_DATA_AT + 10])
    assert c is not None and c.data == b"\x02" * 10
    assert parse_copy(raw[:_DATA_AT - 1]) is None


class _Tables:
    def __init__(self, entries):
        self.entries = entries

    def mappings_of(self, pid):
        return self.entries


class _Cache:
    def __init__(self):
        self.asked: list[str] = []

    def table_for(self, path, build_id=None):
        self.asked.append(path)
        return UnwindTable(build_id, b"")


def test_only_tables_a_copy_can_reach_are_loaded():
    entries = [(0x7000, 0x8000, 0, "cc", "/p/c"),     # a return address in the stack: reached
               (0x1000, 0x2000, 0, "aa", "/p/a"),     # the sampled pc: reached
               (0x3000, 0x4000, 0, "bb", "/p/b"),     # nothing points into it
               (0x5000, 0x6000, 0, None, None),       # reached, but no table (frame pointers)
               (0x9000, 0xA000, 0, "dd", "/p/d")]     # only its end: a return address - 1 is
    data = struct.pack("<6Q", 0x10, 0x7ffd0000, 0x7123, 0x5555, 0x7123, 0xA000)
    copy = StackCopy(1, "x", Regs(0x1500, 0x100, 0), data, (), None)
    cache = _Cache()
    assert CopyUnwinder(_Tables(entries), cache)._process_tables(1, [copy]) is not None
    assert sorted(cache.asked) == ["/p/a", "/p/c", "/p/d"]
