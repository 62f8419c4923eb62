"""ebpf-record: sample stacks with a BPF perf-event program and write a recording."""

import os

# Arrow's default pool (mimalloc in the pyarrow wheels) kept ~20 MiB resident in its 1 GiB
# arena for the ~3 MiB that a window's batch needs at most (the RSS breakdown of
# benchmarks/soak.py); glibc malloc gives it back (recorder/memory.py). Read when pyarrow is
# first imported, after this package (recording.writer, imported by recorder.cli).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
