"""Demangling of Rust v0 and legacy names, C names and hostile input, in process (the checks
against c++filt and rustc are in tests/integration/test_symbolizer_demangle_tools.py)."""

from __future__ import annotations

import time

import pytest

from symbolizer.demangle import demangle
from symbolizer.rust_demangle import MAX_OUTPUT, RustDemangleError, demangle_rust
from tests.helpers.rust_names import V0


def test_v0_closure_and_higher_ranked_dyn():
    assert demangle(V0[0]) == "m::main::{closure#1}"
    assert "dyn for<'a> core::ops::function::Fn<(&'a str,), Output = ()>" in demangle(V0[1])
    assert demangle(V0[6]) == "dynfn::ユニ"  # punycode
    assert "unsafe extern \"C\" fn(" in demangle(V0[5])


def test_c_and_garbage_unchanged():
    assert demangle("alpha") == "alpha"
    assert demangle("_Z!!garbage") == "_Z!!garbage"
    assert demangle("_RNvC") == "_RNvC"


@pytest.mark.parametrize("name", [
    "_RB_",  # a backref to itself
    "_R" + "INv" * 400 + "C1a" + "E" * 400,  # nesting far past the limit
    "_RNvC1a" + "1b" * 3,  # trailing garbage
    "_RINvC1aT" + "B5_" * 64 + "EE",  # backrefs that would expand exponentially
    "_RC1a\u00e9",  # not ASCII
])
def test_hostile_v0_names_fail_fast_and_quietly(name, capsys):
    t = time.monotonic()
    with pytest.raises(RustDemangleError):
        demangle_rust(name)
    assert time.monotonic() - t < 1
    assert demangle(name) == name
    assert capsys.readouterr().out == ""  # nothing printed, ever


def _b62(n: int) -> str:
    """A v0 base-62 number (0 is `_`, n is n - 1 in base 62 then `_`)."""
    if n == 0:
        return "_"
    digits, n = "", n - 1
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    while True:
        digits = alphabet[n % 62] + digits
        n //= 62
        if not n:
            return digits + "_"


def test_exponential_backrefs_stop_at_the_output_limit():
    """Each tuple is two backrefs to the one before: 2^40 characters if printed."""
    inner = "INvC1a1f"
    prev = len(inner)
    inner += "Thh" + "E"
    for _ in range(40):
        here = len(inner)
        inner += "T" + "B" + _b62(prev) + "B" + _b62(prev) + "E"
        prev = here
    name = "_R" + inner + "E"
    t = time.monotonic()
    with pytest.raises(RustDemangleError, match="too long"):
        demangle_rust(name)
    assert time.monotonic() - t < 2 and MAX_OUTPUT < 1 << 20
