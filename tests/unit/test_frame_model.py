"""profiles.model.Frame's hand-written __init__ (set through the slots' descriptors, for
speed) keeps what the frozen dataclass promised: every field as given, equality over every
field, a hash that agrees with it, no assignment afterwards, replace() and pickling."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.model import Frame, FrameKind, MappingInfo

_text = st.one_of(st.none(), st.text(max_size=8))
_int = st.one_of(st.none(), st.integers(0, 2**64 - 1))
_mapping = st.one_of(st.none(), st.builds(MappingInfo, st.integers(0, 9), st.integers(0, 9),
                                          st.integers(0, 9), st.text(max_size=4), _text))
_values = st.fixed_dictionaries({
    "name": st.text(max_size=8), "kind": st.sampled_from(list(FrameKind)),
    "address": st.integers(0, 2**64 - 1), "object": _text, "build_id": _text,
    "elf_addr": _int, "file": _text, "line": _int, "inlined": st.booleans(), "reason": _text,
    "start_line": _int, "mapping": _mapping})
FIELDS = [f.name for f in dataclasses.fields(Frame) if f.init]


def test_every_field_is_an_argument_in_order():
    assert FIELDS == ["name", "kind", "address", "object", "build_id", "elf_addr", "file",
                      "line", "inlined", "reason", "start_line", "mapping"]


@given(_values)
def test_fields_are_kept_by_keyword_and_by_position(values):
    by_kw = Frame(**values)
    by_pos = Frame(*[values[f] for f in FIELDS])
    for f in FIELDS:
        assert getattr(by_kw, f) == values[f] and getattr(by_pos, f) == values[f]
    assert by_kw == by_pos and hash(by_kw) == hash(by_pos)
    back = pickle.loads(pickle.dumps(by_kw))
    assert back == by_kw and hash(back) == hash(by_kw)


@given(_values, st.sampled_from(FIELDS), st.data())
def test_frames_differing_in_any_field_are_not_equal(values, field, data):
    other = data.draw(_values)[field]
    a, b = Frame(**values), Frame(**{**values, field: other})
    assert (a == b) == (values[field] == other)
    if a == b:
        assert hash(a) == hash(b)


def test_defaults_frozen_and_replace():
    f = Frame("main")
    assert (f.kind, f.address, f.mapping, f.inlined) == (FrameKind.USER, 0, None, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.name = "other"  # type: ignore[misc]
    g = dataclasses.replace(f, name="other", line=3)
    assert (g.name, g.line, f.name) == ("other", 3, "main")
    assert hash(g) == hash(Frame("other", line=3))
