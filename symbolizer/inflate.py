"""Bounded decompression of what ELF files carry compressed.

Three forms reach the symbolizer: SHF_COMPRESSED sections (an Elf_Chdr, then a zlib or zstd
stream; gABI "Section Compression", made by `objcopy --compress-debug-sections` and `gcc
-gz`), legacy GNU `.zdebug_*` sections ("ZLIB", 8-byte big-endian size, zlib stream), and
`.gnu_debugdata` (MiniDebugInfo: an xz stream holding a small ELF). The files come from other
users and other hosts, and zlib inflates up to ~1000:1: a crafted 789 KB section took the
symbolizer to 1.67 GB of memory. So nothing is inflated past a limit, the limit is checked
against the declared size before any work, and a stream that inflates to more than it
declares is refused. A refusal is an InflateError whose message says "too large", which the
caller turns into the object's reason.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

SHF_COMPRESSED = 0x800
ELFCOMPRESS_ZLIB = 1
ELFCOMPRESS_ZSTD = 2
# One inflated section. Compressed sections in the wild are DWARF (Debian's -dbgsym files
# compress theirs); symbol tables are never compressed by the toolchain. 256 MiB holds the
# DWARF sections of all but the largest libraries, which pyelftools could not index anyway.
MAX_SECTION = 256 << 20
MAX_FILE = 512 << 20  # all inflated DWARF sections of one file together (--lines)
# MiniDebugInfo keeps only function symbols (Fedora's find-debuginfo): a few MB even for
# libLLVM. The xz decoder's own memory (its dictionary, chosen by the stream) is bounded too:
# xz -9 needs 65 MiB.
MAX_DEBUGDATA = 64 << 20
XZ_MEMLIMIT = 96 << 20


class InflateError(ValueError):
    """Compressed data that is refused: too large, corrupt, or of an unknown kind."""


def too_large(name: str, size: int, limit: int) -> InflateError:
    return InflateError(f"{name} too large: inflates to {size} bytes, limit {limit}")


def chdr(raw: bytes, is64: bool, little: bool) -> tuple[int, int, int]:
    """(ch_type, ch_size, header length) of an SHF_COMPRESSED section's Elf_Chdr."""
    e = "<" if little else ">"
    fmt = e + ("IIQQ" if is64 else "III")
    n = struct.calcsize(fmt)
    if len(raw) < n:
        raise InflateError("compressed section shorter than its header")
    fields = struct.unpack_from(fmt, raw)
    return fields[0], fields[2] if is64 else fields[1], n


def inflate_section(raw: bytes, is64: bool, little: bool, name: str,
                    limit: int = MAX_SECTION) -> bytes:
    """The contents of an SHF_COMPRESSED section whose stored bytes are `raw`."""
    ch_type, ch_size, n = chdr(raw, is64, little)
    if ch_type == ELFCOMPRESS_ZSTD:
        raise InflateError(f"{name} is zstd-compressed, which is not supported")
    if ch_type != ELFCOMPRESS_ZLIB:
        raise InflateError(f"{name} has unknown compression type {ch_type}")
    if ch_size > limit:
        raise too_large(name, ch_size, limit)
    return inflate_zlib(raw[n:], ch_size, name)


def inflate_zlib(data: bytes, expected: int, name: str) -> bytes:
    """Exactly `expected` bytes from a zlib stream, never more held in memory."""
    if expected == 0:
        return b""  # (max_length=0 would mean "no limit" to zlib)
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, expected)
        # At the limit the stream must be at its end: one more byte means it lied.
        if not d.eof and (d.decompress(d.unconsumed_tail, 1) or not d.eof):
            raise InflateError(f"{name} inflates to other than the {expected} bytes it "
                               "declares")
    except zlib.error as exc:
        raise InflateError(f"{name}: corrupt zlib data ({exc})") from None
    if len(out) != expected:
        raise InflateError(f"{name} inflates to {len(out)} bytes, not the {expected} it "
                           "declares")
    return out


def zlib_inflated_size(chunks: Iterable[bytes], limit: int, name: str) -> int:
    """How many bytes a zlib stream inflates to, counted without keeping them; InflateError
    once it passes `limit` (for readers that inflate without a bound of their own)."""
    d = zlib.decompressobj()
    total = 0
    try:
        for chunk in chunks:
            buf = chunk
            while buf:
                total += len(d.decompress(buf, 1 << 20))
                if total > limit:
                    raise too_large(name, total, limit)
                buf = d.unconsumed_tail
            if d.eof:
                break
    except zlib.error as exc:
        raise InflateError(f"{name}: corrupt zlib data ({exc})") from None
    return total


def inflate_xz(data: bytes, name: str, limit: int = MAX_DEBUGDATA) -> bytes:
    """An xz stream (MiniDebugInfo) inflated to at most `limit` bytes."""
    # loaded here: liblzma is a native library every start-up would pay for, and only
    # objects with a .gnu_debugdata section (MiniDebugInfo) need it
    import lzma

    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
    try:
        out = d.decompress(data, max_length=limit)
    except lzma.LZMAError as exc:
        if "limit" in str(exc).lower():  # liblzma's LZMA_MEMLIMIT_ERROR
            raise InflateError(f"{name} too large: its xz decoder needs more than "
                               f"{XZ_MEMLIMIT} bytes") from None
        raise InflateError(f"corrupt {name}: {exc}") from None
    if not d.eof:
        if len(out) >= limit:
            raise too_large(name, len(out), limit)
        raise InflateError(f"{name} is truncated")
    return out
