"""The share check of the fixture workload's tests: a binomial tolerance around the time the
workload measured (tests/helpers/workload_times.py)."""

from __future__ import annotations

import pytest

from tests.helpers.workload_times import WorkloadTimes, assert_shares_as_measured


def times_file(tmp_path, *lines: str) -> WorkloadTimes:
    path = tmp_path / "times"
    path.write_text("".join(f"{line}\n" for line in lines))
    return WorkloadTimes(path)


def test_processes_add_up(tmp_path):
    # two processes, one of which spent its time unevenly: the shares are of the sum
    t = times_file(tmp_path, "10 100 200 100", "11 300 200 100")
    assert t.shares() == pytest.approx({"alpha": 0.4, "lib_beta": 0.4, "gamma_fn": 0.2})
    assert t.env()["WORKLOAD_TIMES"] == str(t.path)


def test_shares_in_proportion_pass_and_a_misplaced_function_fails(tmp_path):
    t = times_file(tmp_path, "10 1000 2000 1000")
    assert_shares_as_measured({"alpha": 95, "lib_beta": 210, "gamma_fn": 95}, 400, t)
    with pytest.raises(AssertionError, match="lib_beta"):
        # a quarter of lib_beta's samples put elsewhere
        assert_shares_as_measured({"alpha": 100, "lib_beta": 150, "gamma_fn": 100}, 400, t)
    with pytest.raises(AssertionError, match="too few"):
        assert_shares_as_measured({"alpha": 25, "lib_beta": 50, "gamma_fn": 25}, 100, t)


def test_no_times_written_is_an_error(tmp_path):
    with pytest.raises(AssertionError, match="no WORKLOAD_TIMES"):
        WorkloadTimes(tmp_path / "absent").shares()
