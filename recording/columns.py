"""The recording's columns and their Arrow types as text, for readers that do not load pyarrow
(recording/small_parquet.py). recording/schema.py defines the same columns as Arrow fields; a
unit test keeps the two equal."""

from __future__ import annotations

from typing import Any, Protocol

from recording.errors import RecordingFormatError

SCHEMA_VERSION = 2
SCHEMA_VERSION_KEY = b"ebpf_profiler.schema_version"

_U64_LIST = "list<item: uint64>"
PHDRS_TYPE = ("list<item: struct<offset: uint64, vaddr: uint64, filesz: uint64, memsz: uint64, "
              "flags: uint32>>")

# name -> str(pyarrow type), in SCHEMA's order
COLUMN_TYPES: dict[str, str] = {
    "record": "string", "time_ns": "int64", "window_start_ns": "int64",
    "window_end_ns": "int64", "pid": "int32", "ppid": "int32", "comm": "string",
    "exe": "string", "cgroup": "string", "container_id": "string", "maps_seq": "int32",
    "start": "uint64", "end": "uint64", "file_offset": "uint64", "path": "string",
    "inode": "uint64", "dev": "string", "perms": "string", "object_id": "string",
    "build_id": "string", "elf_type": "string", "phdrs": PHDRS_TYPE, "data": "binary",
    "reason": "string", "count": "int64", "user_stack": _U64_LIST, "kernel_stack": _U64_LIST,
    "user_stack_error": "int32", "kernel_stack_error": "int32", "user_unwinder": "string",
    "user_stop": "string", "lost_samples": "int64", "user_regs": _U64_LIST,
    "user_stack_bytes": "binary", "addr": "uint64", "size": "uint64", "name": "string",
    "module": "string", "py_checksum": "uint32", "py_firstlineno": "int32",
    "py_linetable": "binary", "py_version": "string", "key": "string", "value": "string",
}


def check_version(raw: bytes | None, has_record: bool, source: str) -> None:
    """Refuse what is no recording (no schema version, no `record` column) or one newer than
    this reader; `raw` is the schema's SCHEMA_VERSION_KEY metadata."""
    if raw is None or not has_record:
        raise RecordingFormatError(
            f"{source} is not an ebpf-record recording (no schema version); "
            "record one with `ebpf-record --out FILE`"
        )
    try:
        version = int(raw)
    except ValueError:
        raise RecordingFormatError(f"{source}: unreadable schema version {raw!r}") from None
    if version > SCHEMA_VERSION:
        raise RecordingFormatError(
            f"{source} uses recording schema version {version}, this tool reads up to "
            f"{SCHEMA_VERSION}; upgrade ebpf-profiler to symbolize it"
        )


class PyColumn(Protocol):
    def to_pylist(self) -> list[Any]: ...


class RowBatch(Protocol):
    """What reads a batch of recording rows, column by column: a pyarrow RecordBatch, or a
    row group of recording/small_parquet.py."""

    @property
    def num_rows(self) -> int: ...
    @property
    def column_names(self) -> list[str]: ...
    def column(self, name: str, /) -> PyColumn: ...
