"""The `copies` ring records (bpf/profile.c struct copy_t) as the recorder parses them."""

import struct

from recorder.bpf_program import MAX_STACK_DEPTH
from recorder.stack_copies import _DATA_AT, _HEADER, parse_copy


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
