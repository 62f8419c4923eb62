from symbolizer.demangle import demangle


def test_cpp():
    assert demangle("_ZN3foo3barEi") == "foo::bar(int)"


def test_rust_legacy_drops_hash():
    assert demangle("_ZN4core3fmt5write17h0123456789abcdefE") == "core::fmt::write"


def test_rust_v0():
    assert demangle("_RNvCs1234_7mycrate3foo") == "mycrate::foo"


def test_c_and_garbage_unchanged():
    assert demangle("alpha") == "alpha"
    assert demangle("_Z!!garbage") == "_Z!!garbage"
