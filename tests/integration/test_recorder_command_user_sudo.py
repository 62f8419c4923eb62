"""The recorded command under sudo runs as the invoking user (changing user needs root)."""

from __future__ import annotations

import os
import pwd

import pytest

from recorder.targets import RunAs, invoking_user
from tests.helpers.gated_command import run_gated


@pytest.mark.root  # to change user
def test_under_sudo_the_command_runs_as_the_invoking_user():
    run_as = invoking_user({"SUDO_UID": "65534", "SUDO_GID": "65534"})
    nobody = pwd.getpwuid(65534)
    assert run_as == RunAs(65534, 65534, tuple(os.getgrouplist(nobody.pw_name, 65534)),
                           nobody.pw_name, nobody.pw_dir)
    out = run_gated(("id -u; id -g; id -G; echo $HOME $USER $LOGNAME",), run_as).split("\n")
    assert out[:3] == ["65534", "65534", " ".join(map(str, run_as.groups))]
    assert out[3] == f"{nobody.pw_dir} {nobody.pw_name} {nobody.pw_name}"
