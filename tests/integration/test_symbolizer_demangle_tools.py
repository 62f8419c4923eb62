"""Demangling against the real demanglers: c++filt (GNU binutils: libiberty's Rust v0 and
legacy demanglers) on the same names, and, where rustc is installed, every symbol of programs
built here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symbolizer.demangle import demangle
from tests.helpers.rust_names import BASIC, LEGACY, V0


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
        line = re.sub(rf"(\d+|true|false|'[^']*'): ({BASIC})\b", r"\1", line)
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


def test_suffixes_kept_after_demangling():
    assert demangle("_Znwm@plt") == "operator new(unsigned long)@plt"
    assert demangle("_ZSt4cout@@GLIBCXX_3.4") == "std::cout@@GLIBCXX_3.4"
    assert demangle("_RNvCs1234_7mycrate3foo.llvm.123ABC") == "mycrate::foo"
    assert demangle("_RNvCs1234_7mycrate3foo@plt") == "mycrate::foo@plt"


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


def test_every_cxx_symbol_of_libstdcxx_as_nm_demangles_it():
    """Itanium C++ names, through libstdc++'s __cxa_demangle (symbolizer/demangle.py calls it
    by ctypes): every mangled .dynsym name of libstdc++ itself (templates, operators, ABI
    tags, `@@GLIBCXX_3.4` versions) as `nm -C` prints it. nm demangles with libiberty's
    DMGL_PARAMS | DMGL_ANSI, as perf does; c++filt adds DMGL_VERBOSE, which spells out the
    standard abbreviations (`std::istream` as `std::basic_istream<char, ...>`)."""
    lib = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"

    def nm(*flags: str) -> list[str]:
        out = subprocess.run(["nm", "-D", "--defined-only", *flags, lib], capture_output=True,
                             text=True, check=True).stdout
        return [line.split(" ", 2)[2] for line in out.splitlines() if line.count(" ") >= 2]

    pairs = [(raw, shown) for raw, shown in zip(nm(), nm("-C"), strict=True)
             if raw.startswith("_Z")]
    assert len(pairs) > 1000, len(pairs)
    diffs = [f"{raw}: ours {demangle(raw)!r}, nm {shown!r}" for raw, shown in pairs
             if demangle(raw) != shown]
    assert diffs == [], diffs[:5]
