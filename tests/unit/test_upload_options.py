"""ebpf-upload options: flag > PYROSCOPE_* environment > default, and their checks."""

from __future__ import annotations

import logging
import os

import pytest

from cli_common.timeparse import parse_duration, parse_instant
from recording.errors import UsageError
from uploader.options import DEFAULT_SERVER, env_name, options_for


@pytest.fixture(autouse=True)
def _no_twins_from_the_caller(monkeypatch):
    # click reads the twins from os.environ: the test's, not the shell's that ran pytest
    for k in [k for k in os.environ if k.startswith("PYROSCOPE_")]:
        monkeypatch.delenv(k)


def opts(argv: list[str], env: dict[str, str] | None = None):
    with pytest.MonkeyPatch.context() as mp:
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        return options_for(argv)


def test_env_twin_names_follow_the_agent():
    assert env_name("--application-name") == "PYROSCOPE_APPLICATION_NAME"
    assert env_name("--upstream-request-timeout") == "PYROSCOPE_UPSTREAM_REQUEST_TIMEOUT"


def test_flag_beats_environment_beats_default():
    env = {"PYROSCOPE_SERVER_ADDRESS": "http://env:4040", "PYROSCOPE_APPLICATION_NAME": "envapp",
           "PYROSCOPE_SAMPLE_RATE": "49", "PYROSCOPE_UPSTREAM_REQUEST_TIMEOUT": "3s"}
    o = opts(["--application-name", "flagapp"], env)
    assert o.application_name == "flagapp"  # flag wins
    assert o.server_address == "http://env:4040"  # env beats default
    assert o.sample_rate == 49
    assert o.request_timeout_s == 3.0
    d = opts(["--application-name", "a"])
    assert d.server_address == DEFAULT_SERVER
    assert d.spy_name == "ebpfspy" and d.upload_rate_s == 10.0 and d.request_timeout_s == 10.0
    assert d.format == "folded" and d.sample_rate is None


def test_tags_and_headers_merge_per_key_flag_winning():
    o = opts(["--application-name", "a", "--tag", "env=dev", "--tag", "x=1"],
             {"PYROSCOPE_TAG": "env=prod,team=db"})
    assert dict(o.tags) == {"env": "dev", "team": "db", "x": "1"}


def test_boolean_env_twins():
    assert opts(["--application-name", "a"], {"PYROSCOPE_RETIME": "true"}).retime
    assert opts(["--application-name", "a"], {"PYROSCOPE_NO_LOGGING": "1"}).no_logging
    assert not opts(["--application-name", "a"], {"PYROSCOPE_RETIME": "no"}).retime


def test_empty_application_name_gets_random_ebpfspy_name_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ebpf-upload"):
        a = opts([], {"PYROSCOPE_APPLICATION_NAME": ""})
        b = opts([])
    assert a.application_name.startswith("ebpfspy.") and len(a.application_name) > 8
    assert a.application_name != b.application_name
    assert "no application name" in caplog.text


@pytest.mark.parametrize("argv,needle", [
    (["--server-address", "localhost:4040"], "not an http(s) URL"),
    (["--server-address", "http://u:pw@host:4040"], "credentials in the URL"),
    (["--format", "jfr"], "folded or pprof"),
    (["--basic-auth-user", "u"], "needs both"),
    (["--upstream-request-timeout", "ten"], "invalid duration 'ten'"),
    (["--upload-rate", "0"], "duration must be positive"),
    (["--sample-rate", "0"], "must be positive"),
    (["--tag", "novalue"], "not k=v"),
    (["--retime", "--allow-old"], "exclude each other"),
    (["--from", "20", "--until", "10"], "--from must be before --until"),
])
def test_bad_options_give_one_clear_error(argv, needle):
    with pytest.raises(UsageError) as exc:
        opts(["--application-name", "a", *argv])
    assert needle in str(exc.value)


def test_plain_http_with_credentials_to_remote_host_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="ebpf-upload"):
        opts(["--application-name", "a", "--server-address", "http://127.0.0.1:4040"],
             {"PYROSCOPE_AUTH_TOKEN": "t0k"})
        assert "plain http" not in caplog.text
        opts(["--application-name", "a", "--server-address", "http://pyro.example:4040"],
             {"PYROSCOPE_AUTH_TOKEN": "t0k"})
    assert "plain http" in caplog.text and "t0k" not in caplog.text


def test_durations_and_instants():
    assert parse_duration("10s") == 10 and parse_duration("1m30s") == 90
    assert parse_duration("250ms") == pytest.approx(0.25) and parse_duration("2") == 2
    assert parse_instant("now-10s", "x", now=100.0) == 90 * 10**9
    assert parse_instant("1700000000", "x") == 1700000000 * 10**9
    assert parse_instant("2023-11-14T22:13:20Z", "x") == 1700000000 * 10**9
    # no zone: UTC, as ebpf-symbolize reads it (cli_common/timeparse.py)
    assert parse_instant("2023-11-14T22:13:20", "x") == 1700000000 * 10**9
    with pytest.raises(UsageError, match="counts from a start"):
        parse_instant("+10s", "--from")
