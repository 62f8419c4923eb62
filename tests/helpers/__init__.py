"""Helpers shared by unit and integration tests (imported as `tests.helpers.X`)."""
