"""Profile names: `<app>.cpu{k=v,...}`, checked against the servers' grammar before sending.

Pyroscope has no quoting in this syntax, so a value containing `,`, `}` or `=` would change
the meaning of the name; app names are `[A-Za-z0-9_.-]` on every server version (v1.11+ also
takes `/`, older ones do not, so it is refused here); label names are `[A-Za-z0-9_]` (`.` only
from v1.8); `__name__` is reserved. Grafana Pyroscope v1 splits at the last `.` and needs a
profile type there, hence the fixed `.cpu` suffix.
"""

from __future__ import annotations

import re

from recording.errors import UsageError

APP_RE = re.compile(r"[A-Za-z0-9_.\-]+")
LABEL_RE = re.compile(r"[A-Za-z0-9_]+")
MAX_LABELS = 30  # Grafana Pyroscope v1 default
MAX_VALUE_BYTES = 2048


class NameError_(UsageError):
    """A name or label the server would reject (exit code of a usage error)."""


def check_app(app: str) -> None:
    if not APP_RE.fullmatch(app):
        bad = sorted(set(re.sub(r"[A-Za-z0-9_.\-]", "", app)))
        raise NameError_(f"application name {app!r} has characters Pyroscope rejects "
                         f"({' '.join(repr(c) for c in bad)}); use only letters, digits, "
                         "'_', '.' and '-'")
    if app.endswith(".cpu"):
        raise NameError_(f"application name {app!r} already ends in .cpu; ebpf-upload adds "
                         "the profile type itself, drop the suffix")


def check_labels(labels: dict[str, str], where: str) -> None:
    for k, v in labels.items():
        if not LABEL_RE.fullmatch(k):
            raise NameError_(f"{where}: label name {k!r} is not [A-Za-z0-9_]+; rename it "
                             "(e.g. dots and dashes to '_')")
        if k == "__name__":
            raise NameError_(f"{where}: label name __name__ is reserved by Pyroscope")
        bad = sorted({c for c in v if c in ",}="})
        if bad:
            raise NameError_(f"{where}: value of label {k} ({v!r}) contains "
                             f"{' '.join(repr(c) for c in bad)}, which Pyroscope's name "
                             "syntax cannot carry (there is no quoting); remove them")
        if len(v.encode()) > MAX_VALUE_BYTES:
            raise NameError_(f"{where}: value of label {k} is over {MAX_VALUE_BYTES} bytes")
    if len(labels) > MAX_LABELS:
        raise NameError_(f"{where}: {len(labels)} labels, Pyroscope allows {MAX_LABELS}")


def merge_labels(tags: tuple[tuple[str, str], ...], labels: dict[str, str]) -> dict[str, str]:
    """Labels from the file plus --tag; an explicit --tag wins on the same key."""
    merged = dict(labels)
    merged.update(tags)
    return merged


def profile_name(app: str, labels: dict[str, str]) -> str:
    inner = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"{app}.cpu{{{inner}}}"
