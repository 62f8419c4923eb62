"""Secrets of `ebpf-upload`: cleaned once where they are read, kept out of every message.

The secrets are the auth token, the basic-auth password (and the base64 of user:password that
goes on the wire) and every `--header` value (X-API-Key and the like). A secret stored with
`kubectl create secret --from-file` keeps the file's trailing newline; requests then refuses
the header and quotes it in full in its error. So surrounding whitespace is stripped, and a
character an HTTP header cannot carry (a control character: RFC 9110 5.5 allows only visible
ASCII, space, tab and obs-text 0x80-0xFF; http.client encodes values as latin-1) is a usage
error naming the setting, never the value. Basic-auth user and password travel base64-encoded,
so only control characters are refused there.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable

from recording.errors import UsageError

# RFC 9110 5.6.2: a field name is a token
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
SHORT = 4  # secrets shorter than this are redacted only as whole words (see Redactor)


def clean_value(value: str | None, what: str, *, header: bool = True) -> str | None:
    """`value` stripped of surrounding whitespace (None when empty); UsageError naming `what`
    when a control character is left, or (header=True: the value goes into a header as is) a
    character a header cannot carry."""
    if value is None:
        return None
    v = value.strip()
    for i, ch in enumerate(v, 1):
        code = ord(ch)
        if code < 0x20 or code == 0x7F:
            raise UsageError(f"{what} contains a control character (at position {i} of "
                             f"{len(v)}, value not shown); remove it")
        if header and code > 0xFF:
            raise UsageError(f"{what} contains a character HTTP headers cannot carry (non-"
                             f"latin-1, at position {i} of {len(v)}, value not shown); "
                             "remove it")
    return v or None


def clean_header_name(name: str) -> str:
    name = name.strip()
    if not _TOKEN.fullmatch(name):
        raise UsageError(f"--header: {name!r} is not an HTTP header name (letters, digits "
                         "and !#$%&'*+-.^_`|~ only)")
    return name


def basic_auth(user: str, password: str) -> str:
    """The Authorization value of RFC 7617. UTF-8 (its charset="UTF-8" option), since the
    Go servers compare the decoded bytes with a configured Go (UTF-8) string."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Redactor:
    """Replaces every form a secret can take in a message with `***`: as given, as repr()
    and escape sequences show it (requests quotes header values with repr), and the base64
    of user:password. `Bearer x` and `Basic x` are covered since x is. A secret shorter than
    SHORT characters is replaced only where it stands as a word, so a 2-letter header value
    does not blank out every word containing it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for s in secrets:
            if not s:
                continue
            forms |= {s, repr(s)[1:-1], s.encode("unicode_escape").decode("ascii"),
                      repr(s.encode("latin-1", "replace"))[2:-1]}
        # longest first, so a form that contains another is replaced whole
        ordered = sorted(forms, key=len, reverse=True)
        self._long = [f for f in ordered if len(f) >= SHORT]
        short = [re.escape(f) for f in ordered if len(f) < SHORT]
        self._short = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(short) + r")(?![A-Za-z0-9])"
                                 ) if short else None

    def __call__(self, text: str) -> str:
        for f in self._long:
            text = text.replace(f, "***")
        if self._short is not None:
            text = self._short.sub("***", text)
        return text


def secrets_of(token: str | None, user: str | None, password: str | None,
               headers: Iterable[tuple[str, str]]) -> list[str]:
    out = [s for s in (token, password) if s]
    if user and password:
        out.append(basic_auth(user, password).split(" ", 1)[1])
    out += [v for _, v in headers if v]
    return out


class RedactingFilter(logging.Filter):
    """On the `ebpf-upload` logger: whatever a message was built from, no secret leaves."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True
