"""The `copies` ring records (bpf/profile.c struct copy_t) as the recorder parses them."""

import struct

from recorder.bpf_program import MAX_STACK_DEPTH
from recorder.stack_copies import (
    _DATA_AT,
    _HEADER,
    PY_ACTIVATION_END,
    CopyUnwinder,
    StackCopy,
    parse_copy,
    with_python,
)
from recording.pyframes import code_objects, encode_frame
from unwind.reference import Regs
from unwind.table import UnwindTable

END = PY_ACTIVATION_END
EVAL = (0x500000, 0x510000)  # _PyEval_EvalFrameDefault's range in these tests


def _slots(values: list[int]) -> bytes:
    return struct.pack(f"<{MAX_STACK_DEPTH}Q", *values, *[0] * (MAX_STACK_DEPTH - len(values)))


def record(kernel: list[int], data: bytes, kerr: int = 0, py: list[int] | None = None,
           eval_range: tuple[int, int] = (0, 0)) -> bytes:
    py = py or []
    head = _HEADER.pack(4242, len(data), kerr, len(kernel), 0x401000, 0x7ffd0000, 0,
                        b"worker\0".ljust(16, b"\0"), *eval_range, len(py), 0)
    return head + _slots(kernel) + _slots(py) + data


def frame(code: int, index: int = 7) -> list[int]:
    return list(encode_frame(code, 0x1234, index))


def copy_with(python: list[list[int]]) -> StackCopy:
    """A copy whose py[] held these activations (each a flat list of frame pairs)."""
    raw = record([], b"", py=[v for a in python for v in (*a, END)], eval_range=EVAL)
    c = parse_copy(raw)
    assert c is not None
    return c


def test_python_slots_are_cut_into_activations():
    a, b, c = frame(0x1000), frame(0x2000), frame(0x3000)
    copy = copy_with([a + b, [], c])
    assert copy.python == (tuple(a + b), (), tuple(c))
    assert copy.eval_range == EVAL
    # what the recorder reads at the copy's arrival: every frame's code object
    assert code_objects(copy.python_pairs()) == [(0x1000, 0x1234), (0x2000, 0x1234),
                                                 (0x3000, 0x1234)]
    # a walk that hit its step limit leaves an unclosed activation: its frames are kept
    raw = record([], b"", py=[*a, END, *b], eval_range=EVAL)
    got = parse_copy(raw)
    assert got is not None and got.python == (tuple(a), tuple(b))


def test_each_activation_goes_before_its_eval_frame():
    a, b, c = frame(0x1000), frame(0x2000), frame(0x3000)
    copy = copy_with([a + b, [], c])
    native = (0x401000, 0x500010, 0x402000, 0x500020, 0x403000, 0x50ff00, 0x404000)
    stack, cut = with_python(native, copy)
    assert not cut
    # leaf first: the 3.11 activation's two frames, an empty one (a 3.12 shim met first),
    # then one frame, each on the leaf side of its C frame; native frames keep their order
    assert stack == (0x401000, *a, *b, 0x500010, 0x402000, 0x500020, 0x403000, *c, 0x50ff00,
                     0x404000)
    # the range's end is outside it, as in the BPF check (pc < eval_end)
    assert with_python((0x510000,), copy) == ((0x510000,), False)


def test_activations_without_a_native_frame_are_dropped():
    # the native unwind stopped early (a read fault): the frames of C activations it did not
    # reach have no place, as the in-kernel walk never gets to them either
    copy = copy_with([frame(0x1000), frame(0x2000)])
    assert with_python((0x500010, 0x401000), copy) == ((*frame(0x1000), 0x500010, 0x401000),
                                                       False)


def test_no_python_or_no_range_leaves_the_stack_alone():
    native = (0x500010, 0x401000)
    assert with_python(native, copy_with([])) == (native, False)
    raw = record([], b"", py=[*frame(0x1000), END])  # eval range unknown: 0, 0
    plain = parse_copy(raw)
    assert plain is not None and with_python(native, plain) == (native, False)


def test_the_depth_limit_never_splits_a_frame():
    per = (MAX_STACK_DEPTH - 1) // 2  # frames of one activation that fill the stack but one
    activation = [v for i in range(per) for v in frame(0x1000 + i)]
    copy = StackCopy(1, "x", Regs(0, 0, 0), b"", (), None, (tuple(activation),) * 2, EVAL)
    stack, cut = with_python((0x401000, 0x500010, 0x500020), copy)
    assert cut and len(stack) <= MAX_STACK_DEPTH
    assert stack[:1 + 2 * per] == (0x401000, *activation)
    # what follows is whole pairs and natives only: no A without its B
    rest = stack[1 + 2 * per:]
    assert rest == (0x500010,) or rest == ()


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
