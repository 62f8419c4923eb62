"""Recordings written by an attacker (issue 8): their strings never become paths unchecked.

GIVEN a recording whose object carries a build ID like `..//DIR/name`, WHEN it is symbolized
(ebpf-symbolize, or ebpf-upload through the same library), THEN nothing is written outside the
cache directory, and the object is treated as having no build ID, with the reason reported.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_common.command import run
from recording.buildid import build_id_problem, checked_build_id
from symbolizer.cache import SymbolCache
from symbolizer.cli import symbolize_main
from symbolizer.normalize import loads_from_phdrs
from symbolizer.sources import ObjectSymbols, build_id_path
from symbolizer.symtab import SymbolEntry, SymbolTable
from tests.helpers.crafted import crafted_recording, nm_address


@pytest.fixture
def lib(fixture_bins) -> Path:
    return fixture_bins / "libfixture.so"


def evil_recording(tmp_path: Path, lib: Path, build_id: str, **kw) -> Path:
    kw.setdefault("data", lib.read_bytes())  # an in-memory image: symbols without any file
    return crafted_recording(tmp_path / "evil.parquet", path="/usr/lib/libevil.so",
                             build_id=build_id, elf_addr=nm_address(lib, "lib_beta") + 4,
                             layout_of=lib, **kw)


def files_under(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def test_traversing_build_id_writes_nothing_outside_the_cache(lib, tmp_path, capsys):
    target = tmp_path / "pwn"
    rec = evil_recording(tmp_path, lib, f"..//{target}/name")
    cache = tmp_path / "cache"
    rc = run("ebpf-symbolize", symbolize_main, [str(rec), "--cache-dir", str(cache)])
    out = capsys.readouterr().out
    assert rc == 0
    assert not target.exists()  # the old code created pwn/name.sym and pwn/name.json here
    assert files_under(tmp_path) - {"evil.parquet"} <= {
        p for p in files_under(tmp_path) if p.startswith("cache")}
    assert "victim;lib_beta 7" in out  # the in-memory image still names the frame


def test_refused_build_id_is_reported_as_no_build_id(lib, tmp_path, capsys):
    # no image and no file: the frame stays unresolved, and the report says why
    rec = evil_recording(tmp_path, lib, "../../etc/cron.d/x\x1b[2J", data=None)
    rc = run("ebpf-symbolize", symbolize_main,
             [str(rec), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "no build ID to find a debug file by (recorded build ID '../../etc/cron.d/x" in err
    assert "refused: not lowercase hex" in err
    assert "\x1b" not in err  # the untrusted string reaches the terminal escaped
    assert "(build ID .." not in err  # it is not shown as the object's build ID either


def test_upload_library_path_writes_nothing_outside_the_cache(lib, tmp_path, monkeypatch):
    # `ebpf-upload --format pprof evil.parquet` symbolizes with default options: the symbol
    # cache under $XDG_CACHE_HOME
    from symbolizer.options import SymbolizeOptions
    from tests.helpers.profiles import names
    from uploader.recording_input import recording_profiles

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    target = tmp_path / "pwn-upload"
    rec = evil_recording(tmp_path, lib, f"..//{target}/name")
    profiles = list(recording_profiles(str(rec), SymbolizeOptions()))
    assert not target.exists()
    assert any("victim;lib_beta" in s for p in profiles for s in names(p))


@pytest.mark.parametrize("value, problem", [
    ("ab", "1 bytes, outside 2..64"),
    ("abc", "odd number of hex digits (3)"),
    ("a" * 130, "65 bytes, outside 2..64"),
    ("..//etc/passwd", "not lowercase hex"),
    ("ABCD", "not lowercase hex"),
    ("0a1b/../c", "odd number of hex digits (9)"),
])
def test_build_id_validator_says_why(value, problem):
    assert build_id_problem(value) == problem
    assert checked_build_id(value)[0] is None


def test_real_build_ids_pass(lib):
    from recording.elf import elf_info_of_path

    bid = elf_info_of_path(str(lib)).build_id
    assert bid is not None and len(bid) == 40  # sha1, the GNU ld default
    assert checked_build_id(bid) == (bid, None)
    assert checked_build_id("0a1b") == ("0a1b", None)
    assert checked_build_id("f" * 128) == ("f" * 128, None)
    assert checked_build_id(None) == (None, None)


def test_cache_never_turns_a_bad_build_id_into_a_path(tmp_path):
    # defence in depth: a library caller handing the cache an unchecked string
    cache = SymbolCache(str(tmp_path / "cache"), 4)
    table = SymbolTable.build([SymbolEntry(0x1000, 0x10, b"f", 1)])
    syms = ObjectSymbols(table, "test", True)
    cache.get("k", f"..//{tmp_path}/escaped", lambda _fallback: syms)
    assert not (tmp_path / "escaped.sym").exists()
    assert not (tmp_path / "cache").exists()  # memory only, as for no build ID


def test_build_id_tree_path_refuses_bad_ids(tmp_path):
    assert build_id_path("/usr/lib/debug", "0a1b2c") == "/usr/lib/debug/.build-id/0a/1b2c.debug"
    with pytest.raises(ValueError):
        build_id_path(str(tmp_path), "..//etc/shadow")


def test_null_program_header_fields_are_skipped_not_fatal():
    good = {"offset": 0, "vaddr": 0, "filesz": 16, "memsz": 16, "flags": 5}
    assert len(loads_from_phdrs([good, {**good, "vaddr": None}, None])) == 1


def test_dotted_recorded_path_is_never_opened(lib, tmp_path, capsys):
    # The recorded path is untrusted too: the kernel records canonical absolute paths, so
    # one with `..` was made up. The old code opened it (and used what it found there).
    (tmp_path / "sub").mkdir()
    (tmp_path / "planted.so").write_bytes(lib.read_bytes())
    rec = crafted_recording(tmp_path / "r.parquet", path=f"{tmp_path}/sub/../planted.so",
                            build_id=None, elf_addr=nm_address(lib, "lib_beta") + 4,
                            layout_of=lib)
    rc = run("ebpf-symbolize", symbolize_main, [str(rec), "--cache-dir", str(tmp_path / "c")])
    cap = capsys.readouterr()
    assert rc == 0
    assert "lib_beta" not in cap.out
    assert "recorded path refused (has . or .. components)" in cap.err


def test_report_escapes_control_characters_of_recorded_paths(lib, tmp_path, capsys):
    # a process can run from a file named with terminal escapes; the report shows it inert
    rec = crafted_recording(tmp_path / "r.parquet", path="/tmp/\x1b]0;owned\x07\x1b[2Jx",
                            build_id=None, elf_addr=nm_address(lib, "lib_beta") + 4,
                            layout_of=lib)
    rc = run("ebpf-symbolize", symbolize_main, [str(rec), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "/tmp/\\x1b]0;owned\\x07\\x1b[2Jx" in err
    assert "\x1b" not in err and "\x07" not in err


def sysroot_run(lib: Path, tmp_path: Path, recorded: str, capsys) -> tuple[int, str, str]:
    rec = crafted_recording(tmp_path / "r.parquet", path=recorded, build_id=None,
                            elf_addr=nm_address(lib, "lib_beta") + 4, layout_of=lib)
    rc = run("ebpf-symbolize", symbolize_main, [str(rec), "--sysroot", str(tmp_path / "root"),
                                                "--cache-dir", str(tmp_path / "c")])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def outside(lib, tmp_path) -> Path:
    """A readable ELF with symbols outside the sysroot: what an escape would read."""
    (tmp_path / "root/usr/lib").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    target = tmp_path / "outside/lib.so"
    target.write_bytes(lib.read_bytes())
    return target


@pytest.mark.parametrize("how", ["dotdot", "absolute-symlink", "relative-symlink"])
def test_sysroot_confines_every_lookup(lib, tmp_path, outside, capsys, how):
    root = tmp_path / "root"
    if how == "dotdot":
        recorded = "/../outside/lib.so"  # the old code joined it: root/../outside/lib.so
    else:
        recorded = "/usr/lib/libx.so"
        link = str(outside) if how == "absolute-symlink" else "../../" * 12 + str(outside)
        os.symlink(link, root / "usr/lib/libx.so")
    rc, out, err = sysroot_run(lib, tmp_path, recorded, capsys)
    assert rc == 0
    assert "lib_beta" not in out  # nothing outside the root was read
    if how == "dotdot":
        assert "recorded path refused (has . or .. components)" in err
    else:
        # inside the root, the link means root/<its target>, which does not exist
        assert f"object missing: {root.resolve()}{outside} not found" in err


def test_sysroot_symlinks_resolve_inside_it(lib, tmp_path, outside, capsys):
    root = tmp_path / "root"
    (root / "usr/lib/libfixture.so").write_bytes(lib.read_bytes())
    os.symlink("/usr/lib", root / "lib")  # merged /usr, as container images have it
    rc, out, _ = sysroot_run(lib, tmp_path, "/lib/libfixture.so", capsys)
    assert rc == 0 and "victim;lib_beta 7" in out


def test_columns_of_the_wrong_type_are_one_line(tmp_path, capsys):
    # the version key alone is no proof: the old reader took this and crashed in the engine
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recording.schema import SCHEMA_VERSION_KEY

    bad = tmp_path / "typed.parquet"
    table = pa.table({"record": ["process", "window"], "pid": ["x", "y"]})
    pq.write_table(table.replace_schema_metadata({SCHEMA_VERSION_KEY: b"1"}), bad)
    rc = run("ebpf-symbolize", symbolize_main, [str(bad), "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 3
    assert err == (f"ebpf-symbolize: error: {bad}: column 'time_ns' is missing, not int64: "
                   "not a recording ebpf-record wrote\n")


@pytest.mark.parametrize("rate", ["inf", "nan", "-100", "0", "1e300"])
def test_absurd_recorded_sample_rate_falls_back(lib, tmp_path, capsys, rate):
    import pyarrow.parquet as pq

    from recording.schema import SCHEMA, rows_to_batch

    rec = evil_recording(tmp_path, lib, "ab" * 20)
    rows = pq.read_table(rec).to_pylist()
    for r in rows:
        if r["record"] == "meta" and r["key"] == "sample_rate_hz":
            r["value"] = rate
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA),
                   rec)
    rc = run("ebpf-symbolize", symbolize_main, [str(rec), "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert rc == 0 and '"sample_rate": 100,' in out
