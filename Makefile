# Two entry points for a fresh Debian 12 machine, run as root: `make demo` and `make test`.
.PHONY: setup demo test lint unit proto bench bench-compare bench-perf clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache --no-logo

test: setup lint
	.venv/bin/pytest tests

unit: setup
	.venv/bin/pytest tests/unit

# Regenerate the protobuf modules from proto/*.proto (proto/README.md); commit the result.
proto: setup
	.venv/bin/python scripts/gen_proto.py

# Micro-benchmarks (benchmarks/micro, pytest-benchmark), each run saved under .benchmarks/;
# bench-compare also prints each one's ratio to the last saved run (docs/performance.md).
BENCH = .venv/bin/pytest benchmarks/micro --benchmark-enable --benchmark-autosave \
        --benchmark-columns=min,median,mean,stddev,rounds

bench: setup
	$(BENCH) $(BENCH_ARGS)

bench-compare: setup
	$(BENCH) --benchmark-compare $(BENCH_ARGS)

# Whole runs against perf (root): the recorder's cost and file size.
bench-perf: setup
	.venv/bin/python benchmarks/record_vs_perf.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
