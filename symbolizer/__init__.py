"""ebpf-symbolize: turn a recording into named stacks, offline."""
