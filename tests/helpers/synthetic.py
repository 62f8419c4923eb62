"""Helpers for the symbolizer tests (no tests here): recordings built from a live process.

`synthetic_recording` writes what ebpf-record would write for a process, from its real
/proc/PID/maps and ELF headers, with stacks made of real symbol addresses (from GNU nm) in the
design proportions of the fixture workload. It lets the symbolizer be tested without BPF.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq

from recording.elf import elf_info_of_path
from recording.schema import SCHEMA, rows_to_batch

WINDOW_NS = 1_000_000_000


def nm_symbols(path: str | Path) -> dict[str, int]:
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True,
                         check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            syms[parts[2]] = int(parts[0], 16)
    return syms


def exec_mappings(pid: int) -> list[dict]:
    rows = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) < 6 or "x" not in parts[1]:
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            rows.append({"start": start, "end": end, "file_offset": int(parts[2], 16),
                         "perms": parts[1], "dev": parts[3], "inode": int(parts[4]),
                         "path": parts[5].strip()})
    return rows


def absolute(mappings: list[dict], path: str, elf_addr: int) -> int:
    """Inverse of normalization for a test: ELF address -> address in the process."""
    info = elf_info_of_path(path)
    for seg in info.loads:
        if seg.vaddr <= elf_addr < seg.vaddr + seg.filesz:
            off = elf_addr - seg.vaddr + seg.offset
            for m in mappings:
                if m["path"] == path and m["file_offset"] <= off < m["file_offset"] + (
                        m["end"] - m["start"]):
                    return m["start"] + off - m["file_offset"]
    raise LookupError(f"{elf_addr:#x} not mapped from {path}")


def object_rows(mappings: list[dict]) -> tuple[list[dict], dict[str, str]]:
    rows, ids = [], {}
    for m in mappings:
        path = m["path"]
        if path in ids or not path.startswith("/"):
            continue
        info = elf_info_of_path(path)
        oid = info.build_id or f"{path}@{m['dev']}:{m['inode']}"
        ids[path] = oid
        rows.append({"record": "object", "object_id": oid, "path": path,
                     "build_id": info.build_id, "elf_type": info.elf_type,
                     "phdrs": [{"offset": s.offset, "vaddr": s.vaddr, "filesz": s.filesz,
                                "memsz": s.memsz, "flags": s.flags} for s in info.loads]})
    return rows, ids


def synthetic_recording(out: Path, exe: Path, lib: Path, seconds: int = 3,
                        per_window: int = 100,
                        extra_leaf: tuple[str, int] | None = None) -> Path:
    """Record-like Parquet for a live run of the fixture `exe`. `extra_leaf` (object basename
    prefix, ELF address) adds one sample whose leaf is that address, in the first window."""
    proc = subprocess.Popen([str(exe), "30"])
    try:
        deadline = time.monotonic() + 10
        maps: list[dict] = []
        while time.monotonic() < deadline:
            maps = exec_mappings(proc.pid)
            names = [os.path.basename(m["path"]) for m in maps]
            # ld.so maps the needed objects one by one: libfixture.so may be there before
            # libc.so.6 is
            if lib.name in names and (extra_leaf is None
                                      or any(n.startswith(extra_leaf[0]) for n in names)):
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    exe_p = os.path.realpath(exe)
    lib_p = next(m["path"] for m in maps if os.path.basename(m["path"]) == lib.name)
    esyms, lsyms = nm_symbols(exe_p), nm_symbols(lib_p)
    t0 = 1_764_057_600_000_000_000
    rows: list[dict] = [{"record": "meta", "key": "sample_rate_hz", "value": "100"},
                        {"record": "meta", "key": "started_ns", "value": str(t0)},
                        {"record": "process", "pid": proc.pid, "maps_seq": 0, "time_ns": t0,
                         "comm": "workload-pie"}]
    objs, ids = object_rows(maps)
    rows += [{"record": "mapping", "pid": proc.pid, "maps_seq": 0, "object_id": ids.get(m["path"]),
              **m} for m in maps]
    rows += objs
    ret_run = absolute(maps, exe_p, esyms["run_rounds"] + 9)
    ret_main = absolute(maps, exe_p, esyms["main"] + 9)
    leafs = {"alpha": absolute(maps, exe_p, esyms["alpha"] + 4),
             "lib_beta": absolute(maps, lib_p, lsyms["lib_beta"] + 4),
             "gamma_fn": absolute(maps, exe_p, esyms["gamma_fn"] + 4)}
    shares = {"alpha": 1, "lib_beta": 2, "gamma_fn": 1}
    for w in range(seconds):
        ws, we = t0 + w * WINDOW_NS, t0 + (w + 1) * WINDOW_NS
        for name, share in shares.items():
            rows.append({"record": "sample", "window_start_ns": ws, "window_end_ns": we,
                         "pid": proc.pid, "comm": "workload-pie",
                         "count": per_window * share // 4,
                         "user_stack": [leafs[name], ret_run, ret_main],
                         "kernel_stack": [], "kernel_stack_error": -14})
        if extra_leaf and w == 0:
            obj = next(m["path"] for m in maps
                       if os.path.basename(m["path"]).startswith(extra_leaf[0]))
            rows.append({"record": "sample", "window_start_ns": ws, "window_end_ns": we,
                         "pid": proc.pid, "comm": "workload-pie", "count": 1,
                         "user_stack": [absolute(maps, obj, extra_leaf[1]), ret_main],
                         "kernel_stack": [], "kernel_stack_error": -14})
        rows.append({"record": "window", "window_start_ns": ws, "window_end_ns": we,
                     "count": per_window})
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA),
                   out)
    return out
