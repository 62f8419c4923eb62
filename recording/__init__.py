"""The recording file: the contract between `ebpf-record` and everything downstream.

A recording is one Arrow table (Parquet on disk, an Arrow IPC stream in pipes) whose rows are
typed by the `record` column. See docs/recording-format.md for the schema.
"""

from recording.schema import SCHEMA, SCHEMA_VERSION, RecordType

__all__ = ["SCHEMA", "SCHEMA_VERSION", "RecordType"]
