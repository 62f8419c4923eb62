"""pprof sink, decoded with the generated protobuf classes (the checks with Go's own
`go tool pprof` are in tests/integration/test_sink_pprof_go.py)."""

from __future__ import annotations

import gzip

from profiles.pb import profile_pb2
from tests.helpers.sinks import (
    EXE,
    EXE_BID,
    EXE_MAP,
    LIB,
    LIB_BID,
    LIB_MAP,
    first_window,
    pprof_bytes,
)


def _decoded(profiles) -> profile_pb2.Profile:
    prof = profile_pb2.Profile()
    prof.ParseFromString(gzip.decompress(pprof_bytes(profiles)))
    return prof


def test_empty_profile_has_sample_types_and_empty_first_string():
    prof = _decoded([])
    assert prof.string_table[0] == ""
    assert [(prof.string_table[t.type], prof.string_table[t.unit]) for t in
            prof.sample_type] == [("samples", "count"), ("cpu", "nanoseconds")]
    assert not prof.sample and not prof.mapping


def test_mappings_are_the_recorded_ones_main_executable_first():
    # GIVEN a window whose first stack runs in the library
    from tests.helpers.sinks import BETA, MAIN, RUN, root

    p = first_window()
    p.stacks = {(root("workload"), BETA): 1, **p.stacks}
    prof = _decoded([p])
    st = prof.string_table
    # THEN mapping 1 is the executable (most stacks start there), with its recorded range,
    # offset, path and build ID; the library likewise
    m1, m2 = prof.mapping[0], prof.mapping[1]
    assert (m1.id, m1.memory_start, m1.memory_limit, m1.file_offset, st[m1.filename],
            st[m1.build_id]) == (1, EXE_MAP.start, EXE_MAP.limit, EXE_MAP.file_offset, EXE,
                                 EXE_BID)
    assert (m2.memory_start, m2.memory_limit, m2.file_offset, st[m2.filename],
            st[m2.build_id]) == (LIB_MAP.start, LIB_MAP.limit, 0, LIB, LIB_BID)
    # and every location has a mapping holding its address
    by_id = {m.id: m for m in prof.mapping}
    for loc in prof.location:
        m = by_id[loc.mapping_id]
        assert m.memory_start <= loc.address < m.memory_limit or not loc.address
    assert MAIN.address in {loc.address for loc in prof.location}
    assert RUN.mapping == EXE_MAP


def test_has_flags_only_where_every_location_has_them():
    prof = _decoded([first_window()])
    st = prof.string_table
    flags = {st[m.filename]: (m.has_functions, m.has_filenames, m.has_line_numbers,
                              m.has_inline_frames) for m in prof.mapping}
    # the executable's frames all have names, files and lines (as with --lines)
    assert flags[EXE] == (True, True, True, True)
    # the library holds `libfixture.so+0x2a0`: nothing claimed, so pprof and Pyroscope
    # symbolize it again
    assert flags[LIB] == (False, False, False, False)
    # kernel names from kallsyms, no lines
    assert flags["[kernel.kallsyms]"] == (True, False, False, False)
    # an address outside every mapping
    assert flags["[unknown]"] == (False, False, False, False)
