"""C++ and Rust demangling: cxxfilt (libstdc++'s own __cxa_demangle, as c++filt uses) for
Itanium C++, and symbolizer/rust_demangle.py (rustc-demangle's rules, legacy and v0) for
Rust. Names that fail to demangle are shown as they are: a mangled name beats no name.

A suffix after `@` (`memcmp@plt` stubs, `_ZSt4cout@@GLIBCXX_3.4` versioned names) is kept
and the part before it demangled, as perf demangles before adding `@plt` and c++filt treats
`@` as the end of a name. Nothing here prints: a library that writes to stdout would corrupt
`--format pprof > x.pprof` (the removed rust-demangler package did).
"""

from __future__ import annotations

import re
from functools import lru_cache

# Rust legacy symbols are Itanium-shaped but end in a 17h<16 hex> hash path element.
_RUST_LEGACY = re.compile(r"^_ZN.*17h[0-9a-f]{16}E(\.llvm\.\d+)?")


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
        import cxxfilt  # imported on the first C++ name: C programs never pay for it

        try:
            return str(cxxfilt.demangle(base)) + at + suffix
        except Exception:
            # cxxfilt raises its own error types on malformed input; keep the raw name.
            return name
    return name
