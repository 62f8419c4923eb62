"""C++ and Rust demangling: libstdc++'s own __cxa_demangle (the demangler c++filt and gdb
share) for Itanium C++, and symbolizer/rust_demangle.py (rustc-demangle's rules, legacy and
v0) for Rust. Names that fail to demangle are shown as they are: a mangled name beats no name.

__cxa_demangle is called through ctypes here, by its soname, rather than through the cxxfilt
package: importing cxxfilt looks libc and libstdc++ up with ctypes.util.find_library, which
runs `ldconfig -p` twice, 11-16 ms at the first C++ name of every run.

A suffix after `@` (`memcmp@plt` stubs, `_ZSt4cout@@GLIBCXX_3.4` versioned names) is kept
and the part before it demangled, as perf demangles before adding `@plt` and c++filt treats
`@` as the end of a name. Nothing here prints: a library that writes to stdout would corrupt
`--format pprof > x.pprof` (the removed rust-demangler package did).
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from functools import lru_cache

# Rust legacy symbols are Itanium-shaped but end in a 17h<16 hex> hash path element.
_RUST_LEGACY = re.compile(r"^_ZN.*17h[0-9a-f]{16}E(\.llvm\.\d+)?")


# the Itanium ABI's __cxa_demangle(mangled, buffer, length, status): a malloc'ed string, or
# NULL with status -2 for a name that is not a valid mangled name
_CxaDemangle = Callable[[bytes, None, None, "ctypes._Pointer[ctypes.c_int]"], int | None]


@lru_cache(maxsize=1)
def _cxa() -> tuple[_CxaDemangle, Callable[[int], None]] | None:
    """libstdc++'s __cxa_demangle and libc's free, or None where libstdc++ is missing."""
    try:
        cxx = ctypes.CDLL("libstdc++.so.6")
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    fn = cxx["__cxa_demangle"]
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.POINTER(ctypes.c_int)]
    fn.restype = ctypes.c_void_p  # not c_char_p: the pointer itself must be freed
    free = libc["free"]
    free.argtypes = [ctypes.c_void_p]
    free.restype = None
    return fn, free


def _demangle_cxx(name: str) -> str | None:
    cxa = _cxa()
    if cxa is None:
        return None
    fn, free = cxa
    status = ctypes.c_int(0)
    got = fn(name.encode(), None, None, ctypes.pointer(status))
    if not got:
        return None
    try:
        return ctypes.string_at(got).decode("utf-8", "replace") if status.value == 0 else None
    finally:
        free(got)


@lru_cache(maxsize=1 << 16)
def demangle(name: str) -> str:
    if not name.startswith(("_R", "_Z")):
        return name
    base, at, suffix = name.partition("@")
    # imported on the first mangled name: C programs never pay for it
    from symbolizer.rust_demangle import RustDemangleError, demangle_rust

    try:
        if base.startswith("_R") or _RUST_LEGACY.match(base):
            return demangle_rust(base) + at + suffix
    except RustDemangleError:
        return name
    if base.startswith("_Z"):
        got = _demangle_cxx(base)
        return name if got is None else got + at + suffix
    return name
