#!/usr/bin/env bash
# `make demo`: record the bundled workload with BPF, symbolize it offline, write a folded file
# and an HTML flame graph, and print the top functions.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_OUT:-out/demo}
case $out in /*) ;; *) out=$PWD/$out ;; esac  # DEMO_OUT relative (to the checkout) or absolute
mkdir -p "$out"
make -s -C fixtures OUT="$out/bin"
echo "demo: recording the bundled workload (alpha 25%, lib_beta 50%, gamma_fn 25% by design)"
.venv/bin/ebpf-record --out "$out/run.parquet" -- "$out/bin/workload-pie" 5 children
echo "demo: symbolizing offline"
.venv/bin/ebpf-symbolize "$out/run.parquet" --out "$out/run.folded"
.venv/bin/ebpf-symbolize "$out/run.parquet" --format html --out "$out/flamegraph.html"
.venv/bin/python - "$out/run.folded" <<'PY'
import collections, sys
leaf, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    stack, count = line.rsplit(" ", 1)
    leaf[stack.split(";")[-1]] += int(count)
    total += int(count)
print(f"\ntop functions (self samples of {total}):")
for name, n in leaf.most_common(8):
    print(f"  {100 * n / total:5.1f}%  {n:6d}  {name}")
PY
echo
echo "demo: wrote $out/run.parquet (query it with DuckDB), $out/run.folded, $out/flamegraph.html"
