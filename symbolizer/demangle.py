"""C++ and Rust demangling with well-kept libraries: cxxfilt (libstdc++'s own
__cxa_demangle, as c++filt uses) and rust-demangler (rustc-demangle's rules, legacy and v0).
Names that fail to demangle are shown as they are: a mangled name beats no name.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Rust legacy symbols are Itanium-shaped but end in a 17h<16 hex> hash path element; rustc's
# own demangler drops the hash in its default format, as perf and Pyroscope show them.
_RUST_LEGACY = re.compile(r"^_ZN.*17h[0-9a-f]{16}E(\.llvm\.\d+)?$")
_RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")


@lru_cache(maxsize=1 << 16)
def demangle(name: str) -> str:
    if not name.startswith(("_R", "_Z")):
        return name
    import cxxfilt  # imported on the first mangled name: C programs never pay for it
    import rust_demangler

    try:
        if name.startswith("_R"):
            return str(rust_demangler.demangle(name))
        if _RUST_LEGACY.match(name):
            return _RUST_HASH.sub("", str(rust_demangler.demangle(name.split(".llvm.")[0])))
        if name.startswith("_Z"):
            return str(cxxfilt.demangle(name))
    except Exception:
        # Both libraries raise their own error types on malformed input; keep the raw name.
        return name
    return name
