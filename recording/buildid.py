"""What a GNU build ID may look like before it names a file or a URL.

A build ID is the payload of an ELF NT_GNU_BUILD_ID note, written as lowercase hex. It
becomes a path in three places (the symbol cache, `.build-id/xx/rest.debug` trees, the
debuginfod cache) and a URL path (debuginfod's /buildid/HEX/debuginfo). A recording may come
from another host or be crafted, so its build ID strings are untrusted: `..//etc/cron.d/x`
would otherwise be joined into a path and written as root. Only strings that pass
`build_id_problem` are ever used; everything else is treated as "no build ID".

The bounds: at least 2 bytes, because the `.build-id` layout (gdb, Debian's -dbgsym, elfutils)
names a directory after the first byte and a file after the rest, so a 1-byte ID has no file
name; at most 64 bytes, the largest elfutils' debuginfod client accepts (MAX_BUILD_ID_BYTES).
Real IDs are 16 (md5, uuid), 20 (sha1, the GNU ld and lld default) or 32 bytes (Go's
`-B gobuildid`, sha256).
"""

from __future__ import annotations

MIN_BYTES = 2
MAX_BYTES = 64
_HEX = frozenset("0123456789abcdef")


def build_id_problem(value: object) -> str | None:
    """None when `value` is a usable build ID, else why not (one short phrase)."""
    if not isinstance(value, str):
        return f"not text ({type(value).__name__})"
    n = len(value)
    if n % 2:
        return f"odd number of hex digits ({n})"
    if not MIN_BYTES * 2 <= n <= MAX_BYTES * 2:
        return f"{n // 2} bytes, outside {MIN_BYTES}..{MAX_BYTES}"
    if not _HEX.issuperset(value):
        return "not lowercase hex"
    return None


def is_build_id(value: object) -> bool:
    return build_id_problem(value) is None


def checked_build_id(value: str | None) -> tuple[str | None, str | None]:
    """(build ID, None) for a valid one; (None, why it was refused) otherwise; (None, None)
    when there is none. The refused value is quoted shortened and escaped: it is untrusted
    text that ends up in reports on a terminal."""
    if value is None or value == "":
        return None, None
    problem = build_id_problem(value)
    if problem is None:
        return value, None
    shown = ascii(value[:40] + ("..." if len(value) > 40 else ""))
    return None, f"recorded build ID {shown} refused: {problem}"
