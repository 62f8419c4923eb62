"""Compressed sections in files other users control (issue 8 #10): every decompression is
bounded, and an object whose section would inflate too far gets "too large" as its reason.

GIVEN a user's binary whose .symtab is SHF_COMPRESSED and declares 1 GiB (a 1 MB file), WHEN
root symbolizes a recording of it, THEN memory stays small and the frame's reason says "too
large". The old code (pyelftools inflating to whatever the header declares) took 2.1 GB.
"""

from __future__ import annotations

import lzma
import sys
import zlib

import pytest

from symbolizer.elfsyms import ElfReadError, inflate_debugdata, read_elf_symbols_bytes
from symbolizer.inflate import (
    MAX_DEBUGDATA,
    XZ_MEMLIMIT,
    InflateError,
    inflate_zlib,
)
from tests.helpers.crafted import (
    GIB,
    RSS_LIMIT_KB,
    SHF_COMPRESSED,
    SHT_PROGBITS,
    SHT_STRTAB,
    SHT_SYMTAB,
    compressed,
    elf_with_sections,
    max_rss_kb,
    symtab_with,
    zlib_of_zeros,
)

SHF_ALLOC_EXEC = 0x6


def test_compressed_symtab_within_the_limit_is_read():
    sym, strtab = symtab_with(b"my_func", 0x1000, 0x40)
    data = elf_with_sections([
        (".symtab", SHT_SYMTAB, SHF_COMPRESSED, compressed(zlib.compress(sym), len(sym)), 2),
        (".strtab", SHT_STRTAB, 0, strtab, 0),
        (".text", SHT_PROGBITS, SHF_ALLOC_EXEC, b"", 0)])
    assert read_elf_symbols_bytes(data).symtab.lookup(0x1010) == ("my_func", 0x1000)


def test_stream_longer_than_declared_is_refused():
    # declares 2 MiB, holds 64 MiB: inflating stops at what was declared
    with pytest.raises(InflateError, match="other than the 2097152 bytes it declares"):
        inflate_zlib(zlib_of_zeros(64 << 20), 2 << 20, ".symtab")
    with pytest.raises(InflateError, match="inflates to 1048576 bytes, not the 2097152"):
        inflate_zlib(zlib.compress(b"\0" * (1 << 20)), 2 << 20, ".symtab")
    with pytest.raises(InflateError, match="corrupt zlib data"):
        inflate_zlib(b"not zlib at all", 10, ".symtab")
    assert inflate_zlib(b"", 0, ".symtab") == b""  # 0 is no limit to zlib: not asked


def test_zstd_section_is_a_reason_not_a_crash():
    _sym, strtab = symtab_with(b"f", 0x1000, 0x10)
    data = elf_with_sections([
        (".symtab", SHT_SYMTAB, SHF_COMPRESSED, compressed(b"\x28\xb5\x2f\xfd", 48, 2), 2),
        (".strtab", SHT_STRTAB, 0, strtab, 0)])
    with pytest.raises(ElfReadError, match="zstd-compressed, which is not supported"):
        read_elf_symbols_bytes(data)


def test_minidebuginfo_is_bounded_in_size_and_decoder_memory():
    big = lzma.compress(b"\0" * (MAX_DEBUGDATA + (1 << 20)), format=lzma.FORMAT_XZ,
                        preset=0)
    with pytest.raises(ElfReadError, match="too large"):
        inflate_debugdata(big)
    # an xz stream whose LZMA2 dictionary is declared 2 GiB: the decoder's memory is capped
    small = bytearray(lzma.compress(b"hello", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                                    filters=[{"id": lzma.FILTER_LZMA2, "preset": 0}]))
    hdr = 12  # stream header; then the block header: size byte, flags, filter flags, CRC32
    size = (small[hdr] + 1) * 4
    assert small[hdr + 2] == 0x21 and small[hdr + 3] == 1  # LZMA2, one property byte
    small[hdr + 4] = 38  # dictionary size 2 << 30 (xz file format, 5.3.1)
    crc = zlib.crc32(bytes(small[hdr:hdr + size - 4]))
    small[hdr + size - 4:hdr + size] = crc.to_bytes(4, "little")
    with pytest.raises(ElfReadError, match=f"needs more than {XZ_MEMLIMIT} bytes"):
        inflate_debugdata(bytes(small))


def dwarf_bomb(legacy: bool) -> bytes:
    if legacy:  # GNU .zdebug_*: "ZLIB", the size (big-endian, 8 bytes), a zlib stream
        info = b"ZLIB" + (16).to_bytes(8, "big") + zlib_of_zeros(GIB)  # it lies: 16
        return elf_with_sections([(".zdebug_info", SHT_PROGBITS, 0, info, 0),
                                  (".zdebug_abbrev", SHT_PROGBITS, 0, info[:12] + zlib.compress(
                                      b"\0" * 16), 0)])
    return elf_with_sections([
        (".debug_info", SHT_PROGBITS, SHF_COMPRESSED, compressed(zlib_of_zeros(GIB), GIB), 0),
        (".debug_abbrev", SHT_PROGBITS, 0, b"\0" * 8, 0)])


@pytest.mark.parametrize("legacy", [False, True], ids=["SHF_COMPRESSED", "zdebug"])
def test_lines_refuses_a_dwarf_bomb_in_bounded_memory(tmp_path, legacy):
    bomb = tmp_path / "bomb.debug"
    bomb.write_bytes(dwarf_bomb(legacy))
    code = ("from symbolizer.lines import resolve_lines, _DwarfIndex\n"
            f"print(resolve_lines({str(bomb)!r}, [0x1000]))\n"
            f"try: _DwarfIndex({str(bomb)!r})\n"
            "except Exception as exc: print(exc)\n")
    r, rss = max_rss_kb([sys.executable, "-c", code])
    assert r.stdout.splitlines()[0] == "{}"
    assert "too large" in r.stdout
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss // 1024} MB"
