"""Schema of a recording, version 2 (version 1 lacks the unwinder columns; readers accept both).

One flat table, one row per fact, typed by `record`. Columns that do not apply to a record
type are null; Parquet stores runs of nulls almost for free. A flat table keeps the file
queryable with plain SQL (`WHERE record = 'sample'`) and lets the same schema travel as an
Arrow IPC stream, one batch per drain. docs/recording-format.md documents every column.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Required, TypedDict

import pyarrow as pa

# re-exported: defined without pyarrow for recording/small_parquet.py
from recording.columns import SCHEMA_VERSION as SCHEMA_VERSION
from recording.columns import SCHEMA_VERSION_KEY as SCHEMA_VERSION_KEY


class RecordType(StrEnum):
    META = "meta"  # key/value facts about the run, written first
    PROCESS = "process"  # one per (pid, maps_seq): a snapshot of a process
    MAPPING = "mapping"  # executable mappings of a process snapshot
    OBJECT = "object"  # one per ELF object: build ID and PT_LOAD headers as loaded
    KSYM = "ksym"  # kernel symbols that recorded kernel frames fall in
    KMOD = "kmod"  # kernel module bases
    PERFMAP = "perfmap"  # /tmp/perf-PID.map entries (JIT code)
    SAMPLE = "sample"  # a unique (pid, stacks) with its count in one drain window
    WINDOW = "window"  # closes a drain window (also when it had no samples)
    STATS = "stats"  # end-of-run counters: samples, lost samples, ...
    PYCODE = "pycode"  # a CPython code object a Python frame of a sample ran (v2)


PHDR_TYPE = pa.struct(
    [
        ("offset", pa.uint64()),
        ("vaddr", pa.uint64()),
        ("filesz", pa.uint64()),
        ("memsz", pa.uint64()),
        ("flags", pa.uint32()),
    ]
)

FIELDS: list[pa.Field] = [
    pa.field("record", pa.string(), nullable=False),
    pa.field("time_ns", pa.int64()),
    pa.field("window_start_ns", pa.int64()),
    pa.field("window_end_ns", pa.int64()),
    # processes and samples
    pa.field("pid", pa.int32()),
    pa.field("ppid", pa.int32()),
    pa.field("comm", pa.string()),
    pa.field("exe", pa.string()),
    pa.field("cgroup", pa.string()),
    pa.field("container_id", pa.string()),
    pa.field("maps_seq", pa.int32()),
    # mappings (as in /proc/PID/maps)
    pa.field("start", pa.uint64()),
    pa.field("end", pa.uint64()),
    pa.field("file_offset", pa.uint64()),
    pa.field("path", pa.string()),
    pa.field("inode", pa.uint64()),
    pa.field("dev", pa.string()),
    pa.field("perms", pa.string()),
    # objects
    pa.field("object_id", pa.string()),
    pa.field("build_id", pa.string()),
    pa.field("elf_type", pa.string()),
    pa.field("phdrs", pa.list_(PHDR_TYPE)),
    pa.field("data", pa.binary()),
    pa.field("reason", pa.string()),
    # samples: addresses leaf first, as bpf_get_stackid() stores them
    pa.field("count", pa.int64()),
    pa.field("user_stack", pa.list_(pa.uint64())),
    pa.field("kernel_stack", pa.list_(pa.uint64())),
    pa.field("user_stack_error", pa.int32()),
    pa.field("kernel_stack_error", pa.int32()),
    # v2: how the user stack was unwound ("dwarf", "fp", "dwarf+fp", "kernel-fp") and why it
    # ended ("entry", "fp-end", "depth", "read-fault", ...): docs/recording-format.md
    pa.field("user_unwinder", pa.string()),
    pa.field("user_stop", pa.string()),
    # v2, window rows: samples the kernel could not count in this window (count map full)
    pa.field("lost_samples", pa.int64()),
    # reserved for a DWARF-unwinding mode (perf --call-graph dwarf): copied user stack bytes
    # and registers per sample. Version 1 writers leave them null.
    pa.field("user_regs", pa.list_(pa.uint64())),
    pa.field("user_stack_bytes", pa.binary()),
    # symbols (ksym, kmod, perfmap)
    pa.field("addr", pa.uint64()),
    pa.field("size", pa.uint64()),
    pa.field("name", pa.string()),
    pa.field("module", pa.string()),
    # v2, pycode rows (with pid, addr = the code object's address, name = co_qualname, path =
    # co_filename, reason): what the symbolizer needs to name a Python frame and find its line
    pa.field("py_checksum", pa.uint32()),
    pa.field("py_firstlineno", pa.int32()),
    pa.field("py_linetable", pa.binary()),
    pa.field("py_version", pa.string()),
    # meta and stats
    pa.field("key", pa.string()),
    pa.field("value", pa.string()),
]

SCHEMA = pa.schema(FIELDS, metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()})
COLUMNS = [f.name for f in FIELDS]
_COLUMN_SET = frozenset(COLUMNS)


class Phdr(TypedDict):
    """One element of the `phdrs` column (PHDR_TYPE)."""

    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int


class Row(TypedDict, total=False):
    """One row as the writers take it: the FIELDS above as Python values, a key per column
    (a unit test keeps the two equal). A missing key or None is a null."""

    record: Required[str]
    time_ns: int | None
    window_start_ns: int | None
    window_end_ns: int | None
    pid: int | None
    ppid: int | None
    comm: str | None
    exe: str | None
    cgroup: str | None
    container_id: str | None
    maps_seq: int | None
    start: int | None
    end: int | None
    file_offset: int | None
    path: str | None
    inode: int | None
    dev: str | None
    perms: str | None
    object_id: str | None
    build_id: str | None
    elf_type: str | None
    phdrs: list[Phdr] | None
    data: bytes | None
    reason: str | None
    count: int | None
    user_stack: list[int] | None
    kernel_stack: list[int] | None
    user_stack_error: int | None
    kernel_stack_error: int | None
    user_unwinder: str | None
    user_stop: str | None
    lost_samples: int | None
    user_regs: list[int] | None
    user_stack_bytes: bytes | None
    addr: int | None
    size: int | None
    name: str | None
    module: str | None
    py_checksum: int | None
    py_firstlineno: int | None
    py_linetable: bytes | None
    py_version: str | None
    key: str | None
    value: str | None


def rows_to_batch(rows: Sequence[Row]) -> pa.RecordBatch:
    """Build one batch from row dicts; missing columns are null.

    Walks each row's own keys (about 10) rather than every column (40) per row: the recorder
    calls this every drain, and on a busy host most rows are sparse mapping rows."""
    n = len(rows)
    present: dict[str, list[object]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if value is not None:
                column = present.get(key)
                if column is None:
                    column = present[key] = [None] * n
                column[i] = value
    unknown = present.keys() - _COLUMN_SET
    if unknown:
        raise KeyError(f"not columns of the recording schema: {sorted(unknown)}")
    arrays = [
        pa.array(present[f.name], type=f.type) if f.name in present else pa.nulls(n, f.type)
        for f in FIELDS
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)
