"""One vocabulary for --from/--until in ebpf-symbolize and ebpf-upload (issue 12: the
symbolizer read a zone-less time as local and took `+10s`; the uploader refused both and took
`now-10s`, which the symbolizer refused)."""

from __future__ import annotations

import pytest

from cli_common.timeparse import TimeBound, parse_time
from recording.errors import UsageError
from symbolizer.cli import parse_args as symbolize_args
from uploader.options import options_for

S = 10**9
T = 1_700_000_000  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize("text, want", [
    (str(T), TimeBound(absolute_ns=T * S)),
    (str(T * S), TimeBound(absolute_ns=T * S)),  # 19 digits: nanoseconds, as Pyroscope reads
    ("2023-11-14T22:13:20Z", TimeBound(absolute_ns=T * S)),
    ("2023-11-14T23:13:20+01:00", TimeBound(absolute_ns=T * S)),
    ("2023-11-14T22:13:20", TimeBound(absolute_ns=T * S)),  # no zone: UTC
    ("now", TimeBound(absolute_ns=(T + 5) * S)),
    ("now-10s", TimeBound(absolute_ns=(T - 5) * S)),
    ("+1m30s", TimeBound(offset_ns=90 * S)),
])
def test_every_form(text, want):
    assert parse_time(text, "--from", now=T + 5) == want


@pytest.mark.parametrize("text", ["yesterday", "now+10s", "+", "-5", "nan", "2023-13-01"])
def test_bad_times_name_the_flag_and_the_forms(text):
    with pytest.raises(UsageError) as exc:
        parse_time(text, "--until")
    assert "--until" in str(exc.value)


def test_both_commands_take_the_same_forms():
    for text in ("now-10s", "+10s", "2023-11-14T22:13:20"):
        a = symbolize_args(["r.parquet", "--from", text])
        assert parse_time(a.from_, "--from", now=T) == parse_time(text, "--from", now=T)
    o = options_for(["--application-name", "a", "--from", "2023-11-14T22:13:20",
                     "--until", "+10s"])
    assert (o.from_ns, o.until_ns) == (T * S, (T + 10) * S)


def test_upload_until_offset_needs_from():
    with pytest.raises(UsageError, match="--from"):
        options_for(["--application-name", "a", "--until", "+10s"])
