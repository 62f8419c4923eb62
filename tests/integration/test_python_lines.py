"""The three line-table formats, decoded offline, give the line the interpreter itself gives:
every instruction of many code objects against PyCode_Addr2Line (via ctypes, in the very
interpreter), and (f_lasti, f_lineno) of frames of a running thread, per version."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from recording.pyframes import NO_INSTRUCTION
from symbolizer.python import compute_line, line_of, line_ranges
from tests.helpers.pyversions import interpreters

SCRIPT = Path(__file__).with_name("pydata") / "lines.py"


@pytest.fixture(scope="module", params=interpreters())
def dump(request):
    version, exe = request.param
    out = subprocess.run([exe, str(SCRIPT)], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return version, json.loads(out)


def test_every_instruction_of_many_code_objects(dump):
    version, data = dump
    checked = 0
    for firstlineno, table_hex, lines in data["codes"]:
        ranges = line_ranges(version, bytes.fromhex(table_hex), firstlineno)
        got = [line_of(ranges, firstlineno, i) for i in range(len(lines))]
        want = [None if line < 0 else line for line in lines]  # -1: no line
        assert got == want, (version, firstlineno)
        checked += len(lines)
    assert checked > 20000
    # instructions with no line exist from 3.10 and must come out as None, not a line
    if version >= (3, 10):
        assert any(-1 in lines for _, _, lines in data["codes"])


def test_lines_of_sampled_frames(dump):
    version, data = dump
    points = set()
    for _, table_hex, firstlineno, lasti_bytes, lineno in data["samples"]:
        # BPF records the instruction in 2-byte code units; Python's f_lasti counts bytes
        assert compute_line(version, bytes.fromhex(table_hex), firstlineno,
                            lasti_bytes // 2) == lineno
        points.add((table_hex, lasti_bytes))
    assert len(points) > 10  # many places, not one


@pytest.mark.parametrize("version", [(3, 9), (3, 10), (3, 12)])
def test_frame_not_started_is_at_its_first_line(version):
    assert compute_line(version, b"", 7, NO_INSTRUCTION) == 7


def test_truncated_and_garbage_tables_do_not_raise():
    for version in [(3, 8), (3, 10), (3, 11)]:
        for table in [b"\x01", b"\xff" * 7, bytes(range(256)), b"\xf0\x7f\x7f"]:
            for i in range(0, 300, 7):
                line = compute_line(version, table, 1, i)
                assert line is None or isinstance(line, int)
