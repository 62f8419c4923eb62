"""Symbol sources on real ELF files built from the fixtures: build-ID trees, the binary,
.gnu_debuglink with CRC, MiniDebugInfo, and that a file with another build ID is never used."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from recording.elf import elf_info_of_path
from symbolizer.normalize import ObjectInfo
from symbolizer.options import SymbolizeOptions
from symbolizer.sources import SymbolFinder, build_id_path


def run(*cmd):
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


def nm(path) -> dict[str, int]:
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {p[2]: int(p[0], 16) for p in (ln.split() for ln in out.splitlines())
            if len(p) == 3 and p[1] in "tTwW"}


def obj_of(path: Path, recorded_path: str | None = None) -> ObjectInfo:
    info = elf_info_of_path(str(path))
    return ObjectInfo(info.build_id or "x", recorded_path or str(path), info.build_id,
                      info.elf_type, info.loads)


def finder(tmp_path: Path, *debug_dirs: Path) -> SymbolFinder:
    return SymbolFinder(SymbolizeOptions(debug_dirs=tuple(str(d) for d in debug_dirs),
                                         cache_dir=str(tmp_path / "cache")))


@pytest.fixture
def exe(fixture_bins, tmp_path) -> tuple[Path, dict[str, int]]:
    """A copy of the PIE fixture and its symbols (read before any stripping)."""
    p = tmp_path / "bin" / "workload-pie"
    p.parent.mkdir()
    shutil.copy(fixture_bins / "workload-pie", p)
    return p, nm(p)


def split_debug(binary: Path, tree: Path) -> Path:
    """objcopy --only-keep-debug into a .build-id tree, then strip the binary."""
    bid = elf_info_of_path(str(binary)).build_id
    assert bid
    dest = Path(build_id_path(str(tree), bid))
    dest.parent.mkdir(parents=True, exist_ok=True)
    run("objcopy", "--only-keep-debug", binary, dest)
    run("strip", "--strip-all", binary)
    return dest


def test_unstripped_binary_gives_static_functions(exe, tmp_path):
    path, syms = exe
    got = finder(tmp_path).find(obj_of(path))
    assert got.full and got.table.lookup(syms["gamma_fn"] + 2)[0] == "gamma_fn"


def test_build_id_tree_for_a_stripped_binary(exe, tmp_path):
    path, syms = exe
    tree = tmp_path / "debug"
    split_debug(path, tree)
    assert "gamma_fn" not in nm_or_empty(path)
    got = finder(tmp_path, tree).find(obj_of(path))
    assert got.full and "debug file" in got.source
    assert got.table.lookup(syms["alpha"] + 3)[0] == "alpha"


def nm_or_empty(path) -> dict[str, int]:
    r = subprocess.run(["nm", str(path)], capture_output=True, text=True)
    return {} if r.returncode else {ln.split()[-1]: 0 for ln in r.stdout.splitlines()}


def test_debug_file_with_other_build_id_is_never_used(exe, fixture_bins, tmp_path):
    path, _ = exe
    tree = tmp_path / "debug"
    split_debug(path, tree)
    real_bid = elf_info_of_path(str(path)).build_id
    # Put the library's debug info at the executable's build-ID path: a wrong file.
    wrong = Path(build_id_path(str(tree), real_bid))
    run("objcopy", "--only-keep-debug", fixture_bins / "libfixture.so", wrong)
    got = finder(tmp_path, tree).find(obj_of(path))
    assert not got.full
    assert "mismatch" in (got.problem or "")
    assert all(got.table.name_at(i) != b"lib_beta" for i in range(len(got.table)))


def test_binary_with_other_build_id_is_never_used(exe, fixture_bins, tmp_path):
    path, _ = exe
    recorded = obj_of(path)
    shutil.copy(fixture_bins / "workload-nopie", path)  # "upgraded" since the recording
    got = finder(tmp_path).find(recorded)
    assert len(got.table) == 0 and "mismatch" in (got.problem or "")


def test_missing_object_says_so(exe, tmp_path):
    path, _ = exe
    recorded = obj_of(path)
    path.unlink()
    got = finder(tmp_path).find(recorded)
    assert len(got.table) == 0 and "object missing" in (got.problem or "")
    assert recorded.build_id in (got.problem or "")


def test_sysroot_maps_recorded_paths(exe, tmp_path):
    path, syms = exe
    recorded = obj_of(path, recorded_path="/opt/app/workload-pie")
    root = tmp_path / "root"
    (root / "opt/app").mkdir(parents=True)
    shutil.copy(path, root / "opt/app/workload-pie")
    f = SymbolFinder(SymbolizeOptions(debug_dirs=(), sysroot=str(root), cache_dir=None))
    assert f.find(recorded).table.lookup(syms["alpha"])[0] == "alpha"


def test_debuglink_with_crc(exe, tmp_path):
    path, syms = exe
    dbg = path.parent / "workload-pie.debug"
    run("objcopy", "--only-keep-debug", path, dbg)
    run("strip", "--strip-all", path)
    run("objcopy", f"--add-gnu-debuglink={dbg}", path)
    got = finder(tmp_path).find(obj_of(path))
    assert got.full and "debuglink" in got.source
    assert got.table.lookup(syms["gamma_fn"])[0] == "gamma_fn"


def test_debuglink_crc_mismatch_is_refused(exe, tmp_path):
    path, _ = exe
    dbg = path.parent / "workload-pie.debug"
    run("objcopy", "--only-keep-debug", path, dbg)
    run("strip", "--strip-all", path)
    run("objcopy", f"--add-gnu-debuglink={dbg}", path)
    with open(dbg, "ab") as f:
        f.write(b"tampered")
    got = finder(tmp_path).find(obj_of(path))
    assert not got.full and "CRC mismatch" in (got.problem or "")


def test_minidebuginfo_like_fedora(exe, tmp_path):
    """Fedora's find-debuginfo: the .symtab functions that .dynsym lacks, xz-compressed into
    .gnu_debugdata of the stripped binary."""
    path, syms = exe
    work = tmp_path / "mini"
    work.mkdir()
    dyn = set(subprocess.run(["nm", "-D", "--defined-only", "--format=posix", str(path)],
                             capture_output=True, text=True).stdout.split("\n"))
    dyn_names = {ln.split()[0] for ln in dyn if ln.strip()}
    keep = sorted(n for n in syms if n not in dyn_names)
    (work / "keep").write_text("\n".join(keep) + "\n")
    mini = work / "mini_debuginfo"
    run("objcopy", "--only-keep-debug", path, mini)
    run("objcopy", "-S", "--remove-section", ".gdb_index", "--remove-section", ".comment",
        f"--keep-symbols={work / 'keep'}", mini)
    run("xz", "-k", mini)
    run("strip", "--strip-all", path)
    run("objcopy", "--add-section", f".gnu_debugdata={mini}.xz", path)
    got = finder(tmp_path).find(obj_of(path))
    assert "MiniDebugInfo" in got.source
    assert got.table.lookup(syms["gamma_fn"] + 1)[0] == "gamma_fn"


def _resolver_symbols(tmp_path: Path, obj: ObjectInfo, *debug_dirs: Path):
    from symbolizer.cache import SymbolCache

    f = finder(tmp_path, *debug_dirs)
    cache = SymbolCache(str(tmp_path / "cache"), 8)  # a new run: nothing in memory
    return cache.get(obj.object_id, obj.build_id, lambda fb: f.find(obj, fb))


def test_warm_partial_table_does_not_parse_the_binary_again(exe, tmp_path, monkeypatch):
    """A stripped binary without a debug file: the first run parses it (.dynsym); later runs
    take the cached table and only look for the debug file (stat), as the binary's build ID
    says its bytes, and so its lack of .symtab and its .gnu_debuglink, are the same."""
    import symbolizer.sources as sources

    path, syms = exe
    dbg = path.parent / "workload-pie.debug"
    run("objcopy", "--only-keep-debug", path, dbg)
    run("strip", "--strip-all", path)
    run("objcopy", f"--add-gnu-debuglink={dbg}", path)
    dbg.rename(tmp_path / "workload-pie.debug.away")  # not installed yet
    obj = obj_of(path)
    reads: list[str] = []
    real = sources._read_file
    monkeypatch.setattr(sources, "_read_file", lambda p, *a: (reads.append(p), real(p, *a))[1])

    first = _resolver_symbols(tmp_path, obj)
    assert not first.full and reads == [str(path)]
    reads.clear()
    second = _resolver_symbols(tmp_path, obj)
    assert not second.full and reads == []  # the binary was not read again
    assert second.table.to_bytes() == first.table.to_bytes()
    # the debug file arrives: the recorded debuglink finds it without reading the binary
    (tmp_path / "workload-pie.debug.away").rename(dbg)
    third = _resolver_symbols(tmp_path, obj)
    assert third.full and "debuglink" in third.source
    assert third.table.lookup(syms["gamma_fn"])[0] == "gamma_fn"
    assert str(path) not in reads
