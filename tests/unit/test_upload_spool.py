"""The on-disk spool: order, size cap (oldest dropped with a warning), no secrets."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from recording.errors import OutputError
from uploader.client import IngestRequest
from uploader.spool import Spool


def req(i: int, size: int = 100) -> IngestRequest:
    return IngestRequest((("name", "a.cpu{}"), ("from", str(i)), ("until", str(i + 10))),
                         b"x" * size)


def test_fifo_order_survives_reopen(tmp_path):
    s = Spool(tmp_path, 10**6, "http://h:4040", None)
    for i in range(12):  # past 9 -> 10: numeric, not lexical, order
        s.put(req(i))
    del s
    s2 = Spool(tmp_path, 10**6, "http://h:4040", None)
    order = []
    while (item := s2.oldest()) is not None:
        path, r = item
        order.append(int(r.param("from")))
        s2.remove(path)
    assert order == list(range(12))


def test_cap_drops_oldest_first_and_warns_with_count(tmp_path, caplog):
    s = Spool(tmp_path, 1000, "http://h:4040", None)
    with caplog.at_level(logging.WARNING, logger="ebpf-upload"):
        for i in range(10):
            s.put(req(i, size=200))
    assert s.size() <= 1000
    kept = [int(s.read(p).param("from")) for p in s.files()]  # type: ignore[union-attr]
    assert kept == list(range(10 - len(kept), 10))  # the newest survive, in order
    assert s.dropped == 10 - len(kept) > 0
    assert "dropped the 1 oldest" in caplog.text
    assert "--spool-max-bytes" in caplog.text


def test_each_server_and_tenant_has_its_own_queue(tmp_path):
    a = Spool(tmp_path, 10**6, "http://h:4040", "t1")
    b = Spool(tmp_path, 10**6, "http://h:4040", "t2")
    a.put(req(1))
    assert len(a) == 1 and len(b) == 0


def test_second_user_of_one_spool_is_refused(tmp_path):
    _first = Spool(tmp_path, 10**6, "http://h:4040", None)
    with pytest.raises(OutputError, match="another ebpf-upload"):
        Spool(tmp_path, 10**6, "http://h:4040", None)


def test_files_private_and_unreadable_ones_set_aside(tmp_path):
    s = Spool(tmp_path, 10**6, "http://h:4040", None)
    s.put(req(1))
    (path,) = s.files()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.dir.stat().st_mode) == 0o700
    path.write_bytes(b"garbage")
    assert s.oldest() is None
    assert (s.dir / "rejected" / path.name).exists()


def modes(base) -> dict[str, int]:
    return {str(p.relative_to(base)): stat.S_IMODE(p.lstat().st_mode)
            for p in [base, *base.rglob("*")]}


def test_every_directory_and_file_of_the_spool_is_private(tmp_path):
    # GIVEN a spool dir that does not exist yet, under the usual umask 022
    base = tmp_path / "state" / "ebpf-profiler" / "spool"
    old = os.umask(0o022)
    try:
        s = Spool(base, 10**6, "http://h:4040", None)
        s.put(req(1))
        s.put(req(2), rejected=True)
    finally:
        os.umask(old)
    got = modes(tmp_path / "state")
    dirs = {k: v for k, v in got.items() if (tmp_path / "state" / k).is_dir()}
    files = {k: v for k, v in got.items() if k not in dirs}
    assert set(dirs.values()) == {0o700}, got
    assert set(files.values()) == {0o600}, got
    assert any(k.endswith(".lock") for k in files) and any(k.endswith("server") for k in files)


def test_a_spool_left_0755_by_an_older_version_is_tightened(tmp_path):
    s = Spool(tmp_path, 10**6, "http://h:4040", None)
    s.dir.chmod(0o755)
    (s.dir / "server").chmod(0o644)
    del s
    s = Spool(tmp_path, 10**6, "http://h:4040", None)
    assert stat.S_IMODE(s.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((s.dir / "server").stat().st_mode) == 0o600


def test_spool_queue_that_is_a_symlink_or_foreign_is_refused(tmp_path):
    s = Spool(tmp_path / "a", 10**6, "http://h:4040", None)
    key = s.dir.name
    del s
    # a symlink where the queue should be (another user pointing us at their directory,
    # whose planted requests we would send with our credentials)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / key).symlink_to(tmp_path / "a" / key)
    with pytest.raises(OutputError, match="symlink"):
        Spool(tmp_path / "b", 10**6, "http://h:4040", None)
    if os.geteuid() == 0:
        os.chown(tmp_path / "a" / key, 65534, 65534)
        with pytest.raises(OutputError, match="owned by uid 65534"):
            Spool(tmp_path / "a", 10**6, "http://h:4040", None)
