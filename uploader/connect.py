"""Answers of the push API: Connect protocol errors -> the delivery loop's decisions.

A Connect unary error is an HTTP status with a JSON body `{"code": "...", "message": "..."}`
(connectrpc.com/docs/protocol, "Error end-stream"); Grafana Pyroscope answers its validation
failures so. The code decides, the same way the HTTP status does on /ingest (client.py):
- invalid_argument (400): this request is wrong -- a label the server refuses, or
  `not_in_ingestion_window` (the pprof's time_nanos is older than `reject-older-than`, 1 h by
  default, or more than 10 min ahead), which /ingest answers with 422: set aside, stop;
- unauthenticated (401), permission_denied (403): the configuration is wrong: stop, keep it;
- resource_exhausted (429: rate or series limits), unavailable (503), deadline_exceeded,
  aborted, internal, unknown: try again later;
- unimplemented/not_found: no push API there (a legacy server): a configuration problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum


class Decision(Enum):
    RETRY = "retry"
    REJECTED = "rejected"
    CONFIG = "config"


@dataclass(frozen=True)
class ConnectError:
    code: str
    message: str


_DECISIONS = {
    "invalid_argument": Decision.REJECTED,
    "failed_precondition": Decision.REJECTED,
    "out_of_range": Decision.REJECTED,
    "already_exists": Decision.REJECTED,
    "unauthenticated": Decision.CONFIG,
    "permission_denied": Decision.CONFIG,
    "unimplemented": Decision.CONFIG,
    "not_found": Decision.CONFIG,
    "resource_exhausted": Decision.RETRY,
    "unavailable": Decision.RETRY,
    "deadline_exceeded": Decision.RETRY,
    "aborted": Decision.RETRY,
    "internal": Decision.RETRY,
    "unknown": Decision.RETRY,
    "canceled": Decision.RETRY,
    "data_loss": Decision.RETRY,
}

ADVICE = {
    "invalid_argument": "the server rejected the profile or its labels; check "
                        "--application-name, --tag and the labels in the input",
    "unauthenticated": "the server refused the credentials; check PYROSCOPE_BASIC_AUTH_USER/"
                       "_PASSWORD (or the token); Grafana Cloud also needs --tenant-id",
    "permission_denied": "the credentials are valid but may not write here; use ones with "
                         "write access for this tenant (--tenant-id)",
    "unimplemented": "the server has no push API (a legacy Pyroscope?); use --protocol ingest",
    "not_found": "the server has no push API (a legacy Pyroscope?); use --protocol ingest",
}
WINDOW_ADVICE = ("the window is outside the server's ingestion window (older than 1 hour or "
                 "more than 10 minutes ahead, -validation.reject-older-than); replay an old "
                 "recording with --retime")


def parse_error(body: bytes) -> ConnectError | None:
    """The Connect error in an answer body, or None when it is not one."""
    try:
        data = json.loads(body[:4096])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        return None
    return ConnectError(data["code"][:64], str(data.get("message") or "")[:300])


def decide(err: ConnectError) -> Decision | None:
    return _DECISIONS.get(err.code)


def advice(err: ConnectError) -> str:
    if "ingestion_window" in err.message or "ingestion window" in err.message:
        return WINDOW_ADVICE
    return ADVICE.get(err.code, "the server refused the upload")
