"""ebpf-record: sample stacks with a BPF perf-event program and write a recording."""
