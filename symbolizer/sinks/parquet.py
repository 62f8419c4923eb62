"""parquet sink: one row per (stack, process, frame), for analysis in DuckDB, pandas or Spark.

Each frame row repeats its stack's window, labels, process (`pid`, `comm`) and count, so the
usual questions are plain GROUP BYs, without joins and whatever the row order:
self time sums `count` over `leaf` rows, inclusive time over `inclusive` rows (the first row
of each function in its stack, so recursion counts once), and a total over `depth = 0` rows.
Summing `count` over all rows counts each sample once per frame. `stack_id` is a hash of the
stack's frames, equal for the same stack in every window and file, so stacks can be followed
across windows; one stack of one process is one (window, labels, stack_id, pid). Unresolved
frames keep their address, object, build ID and ELF address next to the reason.
docs/recording-format.md, "Symbolized Parquet", has the schema and tested queries.

One row group per Profile; nothing needs seeking, so `--out -` streams to a pipe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from profiles.model import Profile, Stack
from symbolizer.sinks import WholeOutputSink

SCHEMA = pa.schema([
    pa.field("window_start_ns", pa.int64(), nullable=False),
    pa.field("window_end_ns", pa.int64(), nullable=False),
    pa.field("sample_rate", pa.int32(), nullable=False),
    pa.field("labels", pa.map_(pa.string(), pa.string())),
    pa.field("stack_id", pa.int64(), nullable=False),
    pa.field("pid", pa.int32()),  # null for profiles made from folded text
    pa.field("comm", pa.string()),
    pa.field("count", pa.int64(), nullable=False),
    pa.field("depth", pa.int32(), nullable=False),  # 0 = root (the process name)
    pa.field("stack_depth", pa.int32(), nullable=False),
    pa.field("address", pa.uint64()),  # absolute address in the process
    pa.field("object", pa.string()),
    pa.field("build_id", pa.string()),
    pa.field("elf_addr", pa.uint64()),
    pa.field("function", pa.string(), nullable=False),
    pa.field("file", pa.string()),
    pa.field("line", pa.int32()),
    pa.field("inlined", pa.bool_(), nullable=False),
    pa.field("leaf", pa.bool_(), nullable=False),  # depth = stack_depth - 1: self time
    pa.field("inclusive", pa.bool_(), nullable=False),  # first row of its function here
    pa.field("kind", pa.string(), nullable=False),
    pa.field("reason", pa.string()),  # why the frame is unresolved; null when resolved
], metadata={"ebpf_profiler.symbolized_format": "2"})


def stack_id(stack: Stack) -> int:
    """Stable 63-bit id of a stack: the same frames give the same id in any run."""
    h = hashlib.blake2b(digest_size=8)
    for f in stack:
        h.update(f"{f.kind}\0{f.name}\0{f.object}\0{f.elf_addr}\0{f.inlined}\n".encode(
            "utf-8", "surrogateescape"))
    return int.from_bytes(h.digest(), "big") >> 1


def _table(profile: Profile) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    labels = list(profile.labels.items())
    rows: Iterable[tuple[Stack, int | None, str | None, int]] = (
        ((stack, pid, comm, n) for (stack, pid, comm), n in profile.processes.items())
        if profile.processes else ((stack, None, None, n) for stack, n in profile.stacks.items()))
    ids: dict[Stack, int] = {}
    for stack, pid, comm, count in rows:
        sid = ids.get(stack)
        if sid is None:
            sid = ids[stack] = stack_id(stack)
        seen: set[str] = set()
        last = len(stack) - 1
        for depth, f in enumerate(stack):
            cols["window_start_ns"].append(profile.start_ns)
            cols["window_end_ns"].append(profile.end_ns)
            cols["sample_rate"].append(profile.sample_rate)
            cols["labels"].append(labels)
            cols["stack_id"].append(sid)
            cols["pid"].append(pid)
            cols["comm"].append(comm)
            cols["count"].append(count)
            cols["depth"].append(depth)
            cols["stack_depth"].append(len(stack))
            cols["address"].append(f.address or None)
            cols["object"].append(f.object)
            cols["build_id"].append(f.build_id)
            cols["elf_addr"].append(f.elf_addr)
            cols["function"].append(f.name)
            cols["file"].append(f.file)
            cols["line"].append(f.line)
            cols["inlined"].append(f.inlined)
            cols["leaf"].append(depth == last)
            cols["inclusive"].append(f.name not in seen)
            seen.add(f.name)
            cols["kind"].append(str(f.kind))
            cols["reason"].append(f.reason)
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def write(profiles: Iterable[Profile], out: BinaryIO) -> None:
    with pq.ParquetWriter(pa.PythonFile(out, mode="w"), SCHEMA, compression="zstd") as writer:
        for profile in profiles:
            table = _table(profile)
            if table.num_rows:
                writer.write_table(table)


class ParquetSink(WholeOutputSink):
    format = "parquet"
    description = "one row per (stack, process, frame), for analysis in DuckDB, pandas or Spark"

    def write_all(self, profiles: list[Profile]) -> None:
        write(profiles, self.out)


SINK = ParquetSink
