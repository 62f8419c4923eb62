"""Options of one recording run."""

from __future__ import annotations

from dataclasses import dataclass


def stack_entries_for(cpus: int, sample_rate: int, drain_interval: float) -> int:
    """Stack map entries that a drain window cannot fill: the map is emptied at every drain
    and each sample adds at most two stacks (user and kernel), so 2 x CPUs x rate x interval
    holds a whole window; twice that absorbs a drain that comes late (a slow table build)."""
    return max(2048, int(4 * cpus * sample_rate * drain_interval))


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
    stack_storage_size: int | None = None
    """Entries per copy of the BPF stack map (bcc profile.py's --stack-storage-size); None:
    sized so that a window cannot fill it (stack_entries_for)."""
    counts_size: int = 40960
    """Entries per copy of the BPF count map: unique (process, stacks) per drain."""
    call_graph: str = "dwarf"
    """User stacks: "dwarf" unwinds in BPF from .eh_frame tables, with frame pointers where an
    object has none; "fp" uses the kernel's frame-pointer walk only (perf --call-graph)."""
    unwind_table_rows: int = 4 << 20
    """Ceiling of the unwind rows the kernel holds for all objects (8 bytes each); the array
    is sized below it from the objects the targets map at start; objects that do not fit
    are walked by frame pointers."""
    python: bool = True
    """Record the Python frames of CPython 3.8-3.13 processes (with --call-graph dwarf)."""
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
