"""Demangling against c++filt (GNU binutils: libiberty's Rust v0 and legacy demanglers), live
on the same names; and, where rustc is installed, on every symbol of programs built here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from symbolizer.demangle import demangle
from symbolizer.rust_demangle import MAX_OUTPUT, RustDemangleError, demangle_rust

# v0 names from rustc 1.8x builds: closures, <T as Trait>, dyn for<'a> Fn, const generics,
# punycode, fn pointers with `unsafe extern "C"`, shims, tuples, backrefs
V0 = [
    "_RNCNvCskK7mfDs1mzF_1m4mains_0B3_",
    "_RNvXs_Cs9TjmMI0yQWn_5dynfnRDG_INtNtNtCsgEmfK2I1SDS_4core3ops8function2FnTRL0_eEEp6Output"
    "uEL_NtB4_5Named4name",
    "_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeDG_INtNtNtB4_3ops8function2FnTRL0_eEEp6Outpu"
    "tjEL_ECs9TjmMI0yQWn_5dynfn",
    "_RNvXNtNtNtCsgEmfK2I1SDS_4core3ops8function5implsRDG_INtB4_2FnTRL0_eEEp6OutputuEL_IBP_TRe"
    "EE4callCs9TjmMI0yQWn_5dynfn",
    "_RINvNtCsgEmfK2I1SDS_4core6escape14escape_unicodeKja_ECsgY6Mt91CT9J_14rustc_demangle",
    "_RNvMs3_NtCslNYArtu3iFV_5alloc7raw_vecINtB5_6RawVecTOhFUKCBN_EuENtNtCsjrHSEGnQ3l9_3std5a"
    "lloc6SystemE8grow_oneB13_",
    "_RNvCs9TjmMI0yQWn_5dynfnu5idktc",
    "_RNSNvYNCNCNvNtNtCsjrHSEGnQ3l9_3std3sys9backtrace10__print_fmts_00INtNtNtCsgEmfK2I1SDS_4c"
    "ore3ops8function6FnOnceTRNtNtNtBe_12backtrace_rs9symbolize6SymbolEE9call_once6vtableBe_",
    "_RNvNCNKNvNtNtCsjrHSEGnQ3l9_3std2io5stdio14OUTPUT_CAPTURE0023___RUST_STD_INTERNAL_VAL",
]
LEGACY = ["_ZN4core3fmt5write17h0123456789abcdefE",
          "_ZN71_$LT$alloc..vec..Vec$LT$T$GT$$u20$as$u20$core..ops..drop..Drop$GT$4drop17h1a2"
          "b3c4d5e6f7a8bE"]
_BASIC = "u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize|bool|char"


def cxxfilt(names: list[str]) -> list[str]:
    """c++filt's output, brought to rustc-demangle's alternate form: c++filt is verbose by
    default (crate disambiguators `core[1a2b…]`, `10: usize` constants, legacy hashes),
    drops a `.0` suffix that rustc-demangle keeps, and leaves legacy escapes of non-ASCII
    characters (`$u30e6$`) that rustc-demangle decodes."""
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    norm = []
    for line in out:
        line = re.sub(r"\[[0-9a-f]+\]", "", line)
        line = re.sub(rf"(\d+|true|false|'[^']*'): ({_BASIC})\b", r"\1", line)
        line = re.sub(r"\$u([0-9a-f]{2,6})\$", lambda m: chr(int(m.group(1), 16)), line)
        norm.append(re.sub(r"::h[0-9a-f]{16}$", "", line))
    return norm


def same_as_cxxfilt(names: list[str]) -> list[str]:
    diffs = []
    for name, ref in zip(names, cxxfilt(names), strict=True):
        ours = demangle(name)
        if ours != ref and not (ours.startswith(ref + ".") and "." in name):
            diffs.append(f"{name}\n  c++filt {ref}\n  ours    {ours}")
    return diffs


def test_v0_and_legacy_as_cxxfilt():
    assert same_as_cxxfilt(V0 + LEGACY) == []


def test_v0_closure_and_higher_ranked_dyn():
    assert demangle(V0[0]) == "m::main::{closure#1}"
    assert "dyn for<'a> core::ops::function::Fn<(&'a str,), Output = ()>" in demangle(V0[1])
    assert demangle(V0[6]) == "dynfn::ユニ"  # punycode
    assert "unsafe extern \"C\" fn(" in demangle(V0[5])


def test_suffixes_kept_after_demangling():
    assert demangle("_Znwm@plt") == "operator new(unsigned long)@plt"
    assert demangle("_ZSt4cout@@GLIBCXX_3.4") == "std::cout@@GLIBCXX_3.4"
    assert demangle("_RNvCs1234_7mycrate3foo.llvm.123ABC") == "mycrate::foo"
    assert demangle("_RNvCs1234_7mycrate3foo@plt") == "mycrate::foo@plt"


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


def rustc() -> str | None:
    return shutil.which("rustc") or next(
        (p for p in [os.path.expanduser("~/.cargo/bin/rustc")] if os.path.exists(p)), None)


RUST_PROGRAM = r"""
use std::collections::HashMap;
pub trait Named { fn name(&self) -> usize; }
impl Named for Box<dyn for<'a> Fn(&'a str) -> usize> { fn name(&self) -> usize { self("a") } }
pub struct S<const N: usize> { v: [u8; N] }
impl<const N: usize> Named for S<N> { fn name(&self) -> usize { self.v.len() } }
pub fn keep(v: Vec<Box<dyn for<'a> Fn(&'a str) -> usize>>) -> usize {
    v.iter().map(|f| f.name()).sum()
}
pub fn ptr(f: for<'a> fn(&'a u8) -> &'a u8, s: &u8) -> u8 { *f(s) }
pub unsafe extern "C" fn cfn(x: *const [u8; 4]) -> u8 { (*x)[0] }
pub fn tuple(t: (i8, char, &mut [u16])) -> usize { t.2.len() }
pub fn ユニ(x: u32) -> u32 { x + 1 }
fn main() {
    let mut m: HashMap<String, Vec<(i32, char)>> = HashMap::new();
    m.insert("a".into(), vec![(1, 'x')]);
    let c: Box<dyn for<'a> Fn(&'a str) -> usize> = Box::new(move |s: &str| s.len() + m.len());
    println!("{}", keep(vec![c]) + S::<3> { v: [0; 3] }.name() + ユニ(1) as usize);
}
"""


@pytest.mark.parametrize("mangling", ["v0", "legacy"])
def test_every_symbol_of_a_rust_program_as_cxxfilt(tmp_path: Path, mangling):
    if rustc() is None:
        pytest.skip("rustc not installed")
    src = tmp_path / "p.rs"
    src.write_text(RUST_PROGRAM)
    # stable rustc mangles legacy by default and accepts only v0 explicitly
    flags = ["-C", "symbol-mangling-version=v0"] if mangling == "v0" else []
    subprocess.run([rustc(), "-C", "opt-level=0", *flags, "-o", str(tmp_path / "p"), str(src)],
                   check=True, capture_output=True)
    out = subprocess.run(["nm", str(tmp_path / "p")], capture_output=True, text=True).stdout
    names = sorted({p[-1] for line in out.splitlines() if (p := line.split())
                    and p[-1].startswith("_R" if mangling == "v0" else "_ZN")
                    and (mangling == "v0" or re.search(r"17h[0-9a-f]{16}E", p[-1]))})
    assert len(names) > 100
    assert same_as_cxxfilt(names) == []
