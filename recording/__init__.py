"""The recording file: the contract between `ebpf-record` and everything downstream.

A recording is one Arrow table (Parquet on disk, an Arrow IPC stream in pipes) whose rows are
typed by the `record` column. See docs/recording-format.md and recording/schema.py.

Nothing is imported here: `recording.errors` must stay cheap for commands
(the uploader) that never touch Arrow.
"""
