"""python_info reads an interpreter object once per (device, inode, path): later snapshots of
processes that map it open nothing (recorder/python/process.py _read_object)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from recorder import objects
from recorder.procfs import Mapping, read_exec_mappings
from recorder.python import process
from recorder.python.process import PythonProcess, Unsupported, interpreter_mapping, python_info


def test_a_known_interpreter_mapping_opens_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mappings = read_exec_mappings(f"/proc/{os.getpid()}/maps")
    found = interpreter_mapping(mappings)
    assert found is not None, "the test interpreter maps no python object"
    first = python_info(os.getpid(), mappings)
    assert isinstance(first, PythonProcess), first

    opened: list[int] = []

    def counting(pid: int, m: Mapping, proc: str) -> list[Callable[[], int]]:
        opened.append(pid)
        return objects._open_candidates(pid, m, proc)

    monkeypatch.setattr(process, "_open_candidates", counting)
    empty = tmp_path / "proc"  # a /proc where nothing can be opened
    again = python_info(os.getpid(), mappings, str(empty))
    assert again == first and opened == []

    # another file (a new inode) is read, and here it cannot be
    m, _ = found
    other = [dataclasses.replace(x, inode=x.inode + 1) if x is m else x for x in mappings]
    got = python_info(os.getpid(), other, str(empty))
    assert isinstance(got, Unsupported) and "unreadable" in got.reason, got
    assert opened
