"""Helpers for the hostile-input tests (no tests here): recordings an attacker could write.

`crafted_recording` writes a one-process, one-window recording whose only object is whatever
the test says (any path, any build ID string, an in-memory image), with one sample at an ELF
address of it. Nothing comes from a live process, so every field is the attacker's choice.
"""

from __future__ import annotations

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
    import subprocess

    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise LookupError(f"{name} not in {path}")
