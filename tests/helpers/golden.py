"""Golden files (tests/golden/): a test compares an output with the file; UPDATE_GOLDEN=1
rewrites the file instead, for a change of format made on purpose (review the diff)."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing; run with UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"{name} differs from its golden file (UPDATE_GOLDEN=1 " \
                                     "rewrites it when the change is meant)"
