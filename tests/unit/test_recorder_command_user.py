"""`ebpf-record -- CMD` starts CMD from a root process that holds the uploader's secrets (`sudo
-E` passes PYROSCOPE_AUTH_TOKEN along): CMD must see neither root nor the secrets."""

from __future__ import annotations

import os

from recorder.targets import RunAs, child_environment, invoking_user
from tests.helpers.gated_command import run_gated

SECRETS = {
    "PYROSCOPE_AUTH_TOKEN": "glc_secret_token",
    "PYROSCOPE_BASIC_AUTH_PASSWORD": "hunter2",
    "PYROSCOPE_HEADER": "X-API-Key=abc123",
    "PYROSCOPE_API_KEY": "k3y",
    "pyroscope_client_secret": "s3cr3t",
}
KEPT = {"PYROSCOPE_APPLICATION_NAME": "my.app", "PYROSCOPE_SERVER_ADDRESS": "http://x:4040",
        "PATH": "/usr/bin:/bin", "MY_APP_TOKEN": "the command's own, not ours"}


def test_secrets_are_removed_and_the_rest_kept():
    env = child_environment({**SECRETS, **KEPT}, None)
    assert env == KEPT


def test_the_command_does_not_see_the_uploaders_secrets(monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    out = run_gated(("env",))
    for value in SECRETS.values():
        assert value not in out
    assert "PATH=" in out


def test_who_the_command_runs_as():
    if os.geteuid() != 0:
        assert invoking_user({"SUDO_UID": "1000", "SUDO_GID": "1000"}) is None
        return
    assert invoking_user({}) is None  # root without sudo stays root, as pyroscope exec
    assert invoking_user({"SUDO_UID": "0", "SUDO_GID": "0"}) is None
    assert invoking_user({"SUDO_UID": "65534", "SUDO_GID": "65534"}, no_root_drop=True) is None
    nameless = invoking_user({"SUDO_UID": "54321", "SUDO_GID": "54321"})
    assert nameless == RunAs(54321, 54321, (54321,))
    assert "HOME" not in child_environment({"HOME": "/root", "USER": "root"}, nameless)
