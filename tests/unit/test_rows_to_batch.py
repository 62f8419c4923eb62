"""recording.schema.rows_to_batch: each row's values land in its own row of each column,
whatever the key order of neighbouring rows, and a column no row sets is null."""

from __future__ import annotations

import pytest

from recording.schema import SCHEMA, rows_to_batch


def _by_rows(rows: list[dict[str, object]]) -> dict[str, list[object]]:
    """The reference: each row's value of each column, None where it has none."""
    return {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}


def test_runs_with_other_key_orders_and_null_columns_land_in_their_rows() -> None:
    rows: list[dict[str, object]] = [
        {"record": "sample", "pid": 1, "comm": "a", "count": 2, "user_stack": [1, 2]},
        {"record": "sample", "pid": 2, "comm": "b", "count": 3, "user_stack": None},
        # same keys as the rows before, in another order
        {"record": "sample", "count": 4, "pid": 3, "comm": "c", "user_stack": [3]},
        {"record": "mapping", "pid": 3, "addr": 0x1000, "size": 0x2000, "name": None},
        {"record": "window", "count": 9},
        {"record": "window", "count": 10},
    ]
    got = rows_to_batch(rows).to_pydict()
    assert got == _by_rows(rows)
    assert got["count"] == [2, 3, 4, None, 9, 10]
    assert got["user_stack"] == [[1, 2], None, [3], None, None, None]
    assert got["name"] == [None] * 6  # a column whose values are all None stays null


def test_unknown_columns_are_refused_and_empty_input_gives_an_empty_batch() -> None:
    with pytest.raises(KeyError, match="bogus"):
        rows_to_batch([{"record": "sample", "pid": 1}, {"record": "sample", "bogus": 1}])
    assert rows_to_batch([]).num_rows == 0
