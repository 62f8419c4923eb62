"""The queries of docs/recording-format.md, run as documented (no tests here)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "recording-format.md"


T0 = 1_764_057_600_000_000_000


S = 10**9


def doc_query(title: str, path: Path) -> str:
    """The statement after the `-- title` comment in the document, for the file at path."""
    lines = DOC.read_text().splitlines()
    start = lines.index(f"-- {title}") + 1
    sql = []
    for line in lines[start:]:
        if not line.startswith("--"):
            sql.append(line)
        if line.rstrip().endswith(";"):
            break
    text = "\n".join(sql)
    return re.sub(r"'(run|frames)\.parquet'", f"'{path}'", text)
