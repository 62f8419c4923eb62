# Two entry points for a fresh Debian 12 machine, run as root: `make demo` and `make test`.
.PHONY: setup demo test lint unit bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

test: setup lint
	.venv/bin/pytest tests

unit: setup
	.venv/bin/pytest tests/unit

bench: setup
	.venv/bin/python benchmarks/record_vs_perf.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
