"""Options of one recording run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecordOptions:
    out: str
    """Parquet file to write, or `-` for an Arrow IPC stream on stdout."""
    sample_rate: int = 100
    """Samples per second per CPU (Hz), as `pyroscope ebpf --sample-rate`."""
    pids: tuple[int, ...] = ()
    """Profile only these processes and the children they start; empty: the whole system."""
    command: tuple[str, ...] = ()
    """Start this command, profile it and its children, stop when it exits (`pyroscope exec`)."""
    duration: float | None = None
    """Stop after this many seconds; None: until Ctrl-C, SIGTERM or the command's exit."""
    drain_interval: float = 1.0
    """Seconds between drains of the in-kernel maps; each drain is one window in the file."""
    stack_storage_size: int = 16384
    """Entries per copy of the BPF stack map (bcc profile.py's --stack-storage-size)."""
    counts_size: int = 40960
    """Entries per copy of the BPF count map: unique (process, stacks) per drain."""
    include_idle: bool = False
    """Keep samples of the idle task (pid 0)."""
    all_kallsyms: bool = False
    """Store every kernel symbol rather than the ones recorded frames fall in."""
    progress: bool | None = None
    """Show progress on stderr; None: only when stderr is a terminal."""
    debug_bpf: bool = False
    """Print the BPF program as loaded (with its -D options) to stderr."""
    no_root_drop: bool = False
    """Run a `-- CMD` as root even under sudo (`pyroscope exec --no-root-drop`)."""
