"""recording.schema.Row, the writers' typed row, has a key per column of the schema."""

from recording.schema import COLUMNS, Row


def test_row_has_a_key_per_column() -> None:
    assert Row.__required_keys__ | Row.__optional_keys__ == set(COLUMNS)

