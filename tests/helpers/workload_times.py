"""Where the fixture workload's CPU time really went, as the workload measured it in the same
run (WORKLOAD_TIMES, fixtures/src/workload.c), so that a test compares the shares a profiler
sampled with the truth of that run rather than with the design's 1:2:1, which is a ratio of
work that some machines do not turn into a ratio of time."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

FUNCTIONS = ("alpha", "lib_beta", "gamma_fn")


class WorkloadTimes:
    """The file the workload's processes append their per-function thread CPU time to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a workload run (inherited by a recorder's `-- CMD`)."""
        return {**os.environ, "WORKLOAD_TIMES": str(self.path), **extra}

    def lines(self) -> list[tuple[int, ...]]:
        assert self.path.exists(), "the workload wrote no WORKLOAD_TIMES line"
        return [tuple(int(x) for x in line.split())
                for line in self.path.read_text().splitlines() if line.strip()]

    def shares(self) -> dict[str, float]:
        """Each function's share of the three functions' CPU time, all processes together."""
        totals = [sum(line[i + 1] for line in self.lines()) for i in range(len(FUNCTIONS))]
        assert sum(totals) > 0, self.lines()
        return {fn: t / sum(totals) for fn, t in zip(FUNCTIONS, totals, strict=True)}


def assert_shares_as_measured(counts: Mapping[str, int], total: int,
                              times: WorkloadTimes) -> None:
    """Samples per function (`counts`, of `total` samples) in proportion to the measured CPU
    time. Sampling is a binomial draw: with n samples a share p has a standard error of
    sqrt(p(1 - p)/n), 0.043 on a 25% share at n = 100, which a fixed tolerance of 0.07 made a
    coin toss (seen here: fixed rounds that gave 100 samples on a faster day). Four standard
    errors fail a correct profiler once in ~16,000 checks; a profiler that loses or misplaces
    a function is off by far more."""
    assert total >= 200, f"only {total} samples: too few to judge shares"
    measured = times.shares()
    sampled = {fn: counts.get(fn, 0) / total for fn in FUNCTIONS}
    for fn in FUNCTIONS:
        p = measured[fn]
        tolerance = 4 * math.sqrt(p * (1 - p) / total)
        assert abs(sampled[fn] - p) <= tolerance, (
            f"{fn}: sampled {sampled[fn]:.3f} of {total}, measured {p:.3f} "
            f"(+-{tolerance:.3f}); sampled {sampled}, measured {measured}")
