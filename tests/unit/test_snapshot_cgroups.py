"""A process snapshot's cgroup facts are parsed once per distinct /proc/PID/cgroup text."""

from __future__ import annotations

from discovery.cgroups import container_info
from recorder.snapshots import _cgroup_facts

DOCKER = "0::/system.slice/docker-" + "ab" * 32 + ".scope\n"
SERVICE = "0::/system.slice/cron.service\n"


def test_cgroup_facts_are_parsed_once_per_text() -> None:
    _cgroup_facts.cache_clear()
    first = _cgroup_facts(DOCKER)
    info = container_info(DOCKER)
    assert first == (info.path, info.container_id) and first[1] == "ab" * 32
    assert _cgroup_facts(DOCKER) == first
    assert _cgroup_facts(SERVICE) == ("/system.slice/cron.service", None)
    assert _cgroup_facts(None) == (None, None)
    stats = _cgroup_facts.cache_info()
    assert (stats.hits, stats.misses) == (1, 3)
