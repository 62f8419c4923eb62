"""The unwind-table disk cache in a directory of another user (giving it away needs root)."""

from __future__ import annotations

import os

import pytest

from tests.helpers.unwind_cache import cache_file, object_file
from unwind.cache import TableCache
from unwind.table import UnwindTable


@pytest.mark.root  # to give a directory away
def test_directory_of_another_user_turns_the_disk_cache_off(tmp_path):
    obj = object_file(tmp_path)
    root = tmp_path / "cache"
    (root / "unwind").mkdir(parents=True, mode=0o700)
    os.chown(root / "unwind", 65534, 65534)
    c = TableCache(str(root))
    assert isinstance(c.table_for(str(obj)), UnwindTable)
    assert not cache_file(root).exists() and "not a directory of ours" in c.disk_problem
