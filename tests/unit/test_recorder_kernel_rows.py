"""recorder.unwinder.kernel_rows: 16-byte table rows in bpf/profile.c's 8-byte struct row_t,
converted per distinct rule rather than per row, exactly as row by row."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from recorder import unwinder
from recorder.bpf_program import KERNEL_ROW
from recorder.unwinder import _kernel_rows_per_row, kernel_rows
from unwind.table import (
    CFA_PLT,
    CFA_RSP,
    CFA_UNSUPPORTED,
    RBP_AT_CFA,
    RBP_SAME,
    RBP_UNDEFINED,
    ROW,
)

row = st.tuples(
    st.one_of(st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 64) - 1)),
    st.one_of(st.sampled_from([8, 16, 24, 4, -8, 1 << 19]),
              st.integers(-(1 << 31), (1 << 31) - 1)),
    st.one_of(st.sampled_from([0, -16, -8, 7, 1024, -1024]),
              st.integers(-(1 << 15), (1 << 15) - 1)),
    st.integers(0, 6), st.integers(0, 2))


def pack(rows) -> bytes:
    return b"".join(ROW.pack(*r) for r in rows)


@given(st.lists(row, max_size=40), st.integers(1, 8))
def test_same_as_row_by_row(rows, chunk):
    plt_ok = [r for r in rows if r[3] != CFA_PLT or -128 <= r[2] < 128]  # slot is an s8
    data = pack(plt_ok)
    saved = unwinder.KERNEL_ROWS_CHUNK
    unwinder.KERNEL_ROWS_CHUNK = chunk  # chunks of any size, a last one that is short
    try:
        assert kernel_rows(data) == _kernel_rows_per_row(data)
    finally:
        unwinder.KERNEL_ROWS_CHUNK = saved


def test_fields():
    data = pack([(0x1000, 16, -16, CFA_RSP, RBP_AT_CFA), (0x1010, 12, 0, CFA_RSP, RBP_SAME),
                 (0x1020, 8, 5, CFA_PLT, RBP_SAME), (0x1030, 8, -12, CFA_RSP, RBP_AT_CFA)])
    got = list(KERNEL_ROW.iter_unpack(kernel_rows(data)))
    assert got == [(0x1000, 2, CFA_RSP | RBP_AT_CFA << 4, -2),
                   (0x1010, 0, CFA_UNSUPPORTED, 0),  # cfa not a multiple of 8
                   (0x1020, 1, CFA_PLT, 5),          # the PLT threshold in the slot
                   (0x1030, 1, CFA_RSP | RBP_UNDEFINED << 4, 0)]
    high = pack([(1 << 40, 8, 0, CFA_RSP, RBP_SAME)])
    assert KERNEL_ROW.unpack(kernel_rows(high))[2] == CFA_UNSUPPORTED
    assert kernel_rows(b"") == b""
