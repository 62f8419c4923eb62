"""recorder/python/offsets.py is generated, so it must equal what the generator gives today
(it cannot drift), and it must describe the interpreters that run: the same expressions,
evaluated against each build's DWARF debug info, give the same numbers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from recorder.python import gen_offsets
from recorder.python.layout import ABSENT, OFFSET_FIELDS
from recorder.python.offsets import OFFSETS
from recording.elf import elf_info_of_path
from tests.helpers.pydwarf import DwarfTypes
from tests.helpers.pyversions import BUILDS, DEBIAN_311, PYENV

VERSIONS = [tuple(map(int, minor.split("."))) for minor in BUILDS]


def _headers_or_skip(version):
    include = gen_offsets.include_dir(version, gen_offsets.SOURCES[version])
    if not (include / "Python.h").exists():
        pytest.skip(f"no headers of {version} in {include}")
    return include


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
def test_table_is_what_the_headers_give(version):
    include = _headers_or_skip(version)
    assert gen_offsets.generate_one(version, include) == OFFSETS[version]


def test_committed_module_is_the_rendered_table():
    # the file, byte for byte, is what `gen_offsets --write` writes for the table it holds
    assert gen_offsets.render(OFFSETS) == gen_offsets.OUT.read_text()
    assert sorted(OFFSETS) == VERSIONS


def test_every_field_has_an_expression_and_absent_fields_are_absent():
    for name in OFFSET_FIELDS:
        assert name in gen_offsets.EXPRESSIONS
        for version, o in OFFSETS.items():
            assert (gen_offsets.expression_for(name, version) is None) == (
                getattr(o, name) == ABSENT), (name, version)


def test_debian_311_headers_have_the_layout_of_pyenv_3117():
    include = Path("/usr/include/python3.11")
    if not (include / "Python.h").exists():
        pytest.skip("no /usr/include/python3.11 (python3.11-dev)")
    debian = gen_offsets.generate_one((3, 11), include)
    assert debian.headers.startswith("3.11.")
    assert debian.as_dict() | {"headers": ""} == OFFSETS[(3, 11)].as_dict() | {"headers": ""}


def test_generator_refuses_headers_of_another_version():
    include = _headers_or_skip((3, 12))
    with pytest.raises(ValueError, match=r"not 3\.11"):
        gen_offsets.generate_one((3, 11), include)


def _check_dwarf(path: Path, version) -> None:
    types = DwarfTypes(path)
    try:
        for name in OFFSET_FIELDS:
            expr = gen_offsets.expression_for(name, version)
            if expr is not None:
                assert types.evaluate(expr) == getattr(OFFSETS[version], name), (name, expr)
    finally:
        types.close()


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
def test_table_matches_the_debug_info_of_the_pyenv_build(version):
    minor = f"{version[0]}.{version[1]}"
    lib = PYENV / BUILDS[minor] / "lib" / f"libpython{minor}.so.1.0"
    if not lib.exists():
        pytest.skip(f"no {lib}")
    _check_dwarf(lib, version)


def _debian_debug_file() -> Path | None:
    """Debian's python3.11 has its DWARF in python3.11-dbg, by build ID; or a debug file
    named by PY311_DEBIAN_DEBUG_FILE (one unpacked from a .deb of a neighbouring release)."""
    named = os.environ.get("PY311_DEBIAN_DEBUG_FILE")
    if named:
        return Path(named)
    if not os.path.exists(DEBIAN_311):
        return None
    bid = elf_info_of_path(DEBIAN_311, want_sections=False).build_id
    path = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug") if bid else None
    return path if path and path.exists() else None


@pytest.mark.slow
def test_table_matches_the_debug_info_of_debian_311():
    path = _debian_debug_file()
    if path is None:
        pytest.skip("no debug file of /usr/bin/python3.11 (apt-get install python3.11-dbg)")
    _check_dwarf(path, (3, 11))


def test_generator_command_prints_the_module():
    out = subprocess.run([os.sys.executable, "-m", "recorder.python.gen_offsets"],
                         capture_output=True, text=True, check=True).stdout
    assert out == gen_offsets.OUT.read_text()
