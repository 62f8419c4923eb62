"""Helpers for the hostile-input tests (no tests here): recordings an attacker could write.

`crafted_recording` writes a one-process, one-window recording whose only object is whatever
the test says (any path, any build ID string, an in-memory image), with one sample at an ELF
address of it. Nothing comes from a live process, so every field is the attacker's choice.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from recording.elf import elf_info_of_path
from recording.schema import SCHEMA, rows_to_batch

T0 = 1_764_057_600_000_000_000
BASE = 0x7F00_0000_0000  # where the crafted mapping starts in the crafted process


def crafted_recording(out: Path, *, path: str, build_id: str | None, elf_addr: int,
                      layout_of: Path, data: bytes | None = None, windows: int = 1) -> Path:
    """A recording of pid 4242 sampled at `elf_addr` of one object recorded at `path` with
    `build_id`; its PT_LOAD headers are those of the real file `layout_of`."""
    info = elf_info_of_path(str(layout_of))
    text = next(s for s in info.loads if s.flags & 1)
    addr = BASE + elf_addr - text.vaddr
    rows: list[dict] = [
        {"record": "meta", "key": "sample_rate_hz", "value": "100"},
        {"record": "meta", "key": "started_ns", "value": str(T0)},
        {"record": "process", "pid": 4242, "maps_seq": 0, "time_ns": T0, "comm": "victim"},
        {"record": "mapping", "pid": 4242, "maps_seq": 0, "start": BASE,
         "end": BASE + 0x10000, "file_offset": text.offset, "path": path, "perms": "r-xp",
         "object_id": "obj-1"},
        {"record": "object", "object_id": "obj-1", "path": path, "build_id": build_id,
         "elf_type": info.elf_type, "data": data,
         "phdrs": [{"offset": s.offset, "vaddr": s.vaddr, "filesz": s.filesz,
                    "memsz": s.memsz, "flags": s.flags} for s in info.loads]},
    ]
    for w in range(windows):
        ws, we = T0 + w * 10**9, T0 + (w + 1) * 10**9
        rows.append({"record": "sample", "window_start_ns": ws, "window_end_ns": we,
                     "pid": 4242, "comm": "victim", "count": 7, "user_stack": [addr],
                     "kernel_stack": [], "kernel_stack_error": -14})
        rows.append({"record": "window", "window_start_ns": ws, "window_end_ns": we,
                     "count": 7})
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA),
                   out)
    return out


def nm_address(path: Path, name: str) -> int:
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise LookupError(f"{name} not in {path}")


SHT_SYMTAB, SHT_STRTAB, SHT_PROGBITS = 2, 3, 1
SHF_COMPRESSED = 0x800


def elf_with_sections(sections: list[tuple[str, int, int, bytes, int]]) -> bytes:
    """A minimal ELF64 little-endian x86-64 ET_DYN file holding the given sections, each
    (name, sh_type, sh_flags, stored bytes, sh_link), after the null section; .shstrtab and
    the section headers follow. Enough for the symbolizer's readers, and nothing else."""
    import struct

    names = b"\0"
    name_off = []
    for name, *_ in [*sections, (".shstrtab",)]:
        name_off.append(len(names))
        names += name.encode() + b"\0"
    body = bytearray(64)
    placed = []
    for _name, _type, _flags, data, _link in sections:
        placed.append((len(body), len(data)))
        body += data
        body += b"\0" * (-len(body) % 8)
    placed.append((len(body), len(names)))
    body += names
    body += b"\0" * (-len(body) % 8)
    shoff = len(body)
    shdr = "<IIQQQQIIQQ"
    body += b"\0" * struct.calcsize(shdr)  # the null section
    for i, (_name, typ, flags, _data, link) in enumerate(sections):
        off, size = placed[i]
        entsize = 24 if typ == SHT_SYMTAB else 0
        body += struct.pack(shdr, name_off[i], typ, flags, 0, off, size, link,
                            1 if typ == SHT_SYMTAB else 0, 8, entsize)
    off, size = placed[-1]
    body += struct.pack(shdr, name_off[-1], SHT_STRTAB, 0, 0, off, size, 0, 0, 1, 0)
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    body[:64] = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 56, 0, 64,
                                    len(sections) + 2, len(sections) + 1)
    return bytes(body)


def compressed(stream: bytes, size: int, ch_type: int = 1) -> bytes:
    """SHF_COMPRESSED section bytes: an Elf64_Chdr declaring `size`, then the stream, padded
    to whole symbol entries (pyelftools checks a .symtab's stored size against its entry
    size, compressed or not)."""
    import struct

    data = struct.pack("<IIQQ", ch_type, 0, size, 8) + stream
    return data + b"\0" * (-len(data) % 24)


def zlib_of_zeros(n: int) -> bytes:
    """A zlib stream inflating to n zero bytes (n a multiple of 1 MiB), made in milliseconds:
    after a full flush each 1 MiB block compresses to the same bytes, so it is repeated."""
    import struct
    import zlib

    mib = 1 << 20
    assert n % mib == 0 and n >= 2 * mib
    c = zlib.compressobj(9)
    zero = b"\0" * mib
    head = c.compress(zero) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zero) + c.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(n // mib):
        adler = zlib.adler32(zero, adler)
    # the last block: empty, final, fixed Huffman ("\x03\x00"), then the Adler-32 trailer
    return head + block * (n // mib - 1) + b"\x03\x00" + struct.pack(">I", adler)


def symtab_with(name: bytes, value: int, size: int) -> tuple[bytes, bytes]:
    """(.symtab, .strtab) bytes with one global function, defined in section 3 (give it a
    loaded section there: functions of sections never loaded are not code)."""
    import struct

    strtab = b"\0" + name + b"\0"
    sym = b"\0" * 24 + struct.pack("<IBBHQQ", 1, 0x12, 0, 3, value, size)
    return sym, strtab


GIB = 1 << 30
RSS_LIMIT_KB = 600 * 1024  # ebpf-symbolize itself (pyarrow and all) is about 150 MB


def max_rss_kb(cmd: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Run cmd under a fresh Python whose only child it is: its peak RSS, in KB."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], "
             "capture_output=True, text=True, timeout=120); sys.stdout.write(r.stdout); "
             "sys.stderr.write(r.stderr); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True,
                       timeout=180)
    return r, int(r.stderr.strip().splitlines()[-1])


def symtab_bomb(declared: int = GIB) -> bytes:
    _sym, strtab = symtab_with(b"f", 0x1000, 0x10)
    return elf_with_sections([
        (".symtab", SHT_SYMTAB, SHF_COMPRESSED, compressed(zlib_of_zeros(declared), declared), 2),
        (".strtab", SHT_STRTAB, 0, strtab, 0)])
