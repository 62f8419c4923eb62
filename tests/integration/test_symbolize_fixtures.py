"""The fixture workload symbolized from its binaries, from --only-keep-debug files after the
binaries are stripped and deleted, through debuginfod, and against GNU addr2line.

Recordings here are built from a live fixture process's real /proc/PID/maps and ELF headers
(tests/helpers/synthetic.py), so they need no BPF; test_symbolize_recorded.py does the same
with `ebpf-record`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
import requests

from cli_common.command import run
from recording.elf import elf_info_of_path
from recording.reader import iter_batches
from symbolizer.cli import symbolize_main
from symbolizer.elfsyms import read_elf_symbols_bytes
from symbolizer.engine import Engine
from symbolizer.options import SymbolizeOptions
from symbolizer.sources import build_id_path
from tests.helpers.synthetic import synthetic_recording

DESIGN = {"alpha": 0.25, "lib_beta": 0.5, "gamma_fn": 0.25}


def shares(folded: str) -> dict[str, float]:
    counts: dict[str, int] = defaultdict(int)
    for line in folded.splitlines():
        if line and not line.startswith("#"):
            stack, n = line.rsplit(" ", 1)
            counts[stack.split(";")[-1]] += int(n)
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def symbolize(capsys, *args) -> tuple[int, str, str]:
    rc = run("ebpf-symbolize", symbolize_main, [str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def copy_bins(fixture_bins: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("workload-pie", "workload-nopie", "libfixture.so"):
        shutil.copy(fixture_bins / name, dest / name)
    return dest


def strip_to_debug_tree(binaries: list[Path], tree: Path) -> None:
    """What a distribution does: debug files into a .build-id tree, binaries stripped; then
    the binaries are deleted, as if symbolizing on another machine."""
    for b in binaries:
        bid = elf_info_of_path(str(b)).build_id
        assert bid
        dest = Path(build_id_path(str(tree), bid))
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["objcopy", "--only-keep-debug", str(b), str(dest)], check=True)
        subprocess.run(["strip", "--strip-all", str(b)], check=True)
        b.unlink()


@pytest.mark.parametrize("exe", ["workload-pie", "workload-nopie"])
def test_shares_live_and_after_strip_and_delete(exe, fixture_bins, tmp_path, capsys):
    bins = copy_bins(fixture_bins, tmp_path / "bins")
    rec = synthetic_recording(tmp_path / "r.parquet", bins / exe, bins / "libfixture.so")
    rc, out, _ = symbolize(capsys, rec, "--cache-dir", tmp_path / "c1")
    assert rc == 0 and shares(out) == pytest.approx(DESIGN, abs=0.03)

    tree = tmp_path / "debug"
    strip_to_debug_tree([bins / exe, bins / "libfixture.so"], tree)
    rc, out, err = symbolize(capsys, rec, "--debug-dir", tree, "--cache-dir", tmp_path / "c2")
    assert rc == 0 and shares(out) == pytest.approx(DESIGN, abs=0.03)
    assert "unresolved" not in err

    # Without the debug files nothing is named wrongly: frames say object+offset and why.
    rc, out, err = symbolize(capsys, rec, "--debug-dir", tmp_path / "none", "--cache-dir",
                             tmp_path / "c3")
    assert rc == 0 and "alpha" not in out and f"{exe}+0x" in out
    assert "object missing" in err


def addr2line_names(obj: str, addrs: list[int]) -> dict[int, str]:
    """addr2line's function of each address: the outermost of its inline chain (`-i`), which
    is the function the symbol table names (ld.so's _dl_start_final is inlined into
    _dl_start: plain `addr2line -f` prints the inlined one, perf and we the symbol)."""
    out = subprocess.run(["addr2line", "-a", "-f", "-i", "-e", obj,
                          *(f"{a:#x}" for a in addrs)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    names: dict[int, str] = {}
    chain: list[str] = []
    at: int | None = None
    lines = iter(out)
    for line in lines:
        if line.startswith("0x"):  # -a: each address's chain starts with the address
            if at is not None:
                names[at] = chain[-1]
            at, chain = int(line, 16), []
        else:
            chain.append(line)  # the function; the file:line follows
            next(lines, None)
    if at is not None:
        names[at] = chain[-1]
    return names


# GCC names specialised copies `f.constprop.0`, `f.isra.0`, `f.part.0`, `f.cold` in .symtab,
# and perf shows those names as we do; addr2line takes the DWARF name of the original `f`.
_CLONE = re.compile(r"(\.(constprop|isra|part|cold|lto_priv|localalias)(\.\d+)?)+$")


def same_function(ours: str, theirs: str, obj: str | None = None,
                  addr: int | None = None) -> bool:
    if _CLONE.sub("", ours) == _CLONE.sub("", theirs):
        return True
    # glibc defines a function under several names at one address (__libc_start_main@@
    # GLIBC_2.34, @GLIBC_2.2.5 and the local __libc_start_main_impl that DWARF names); the
    # symbol table (nm) says whether two names are such aliases
    return obj is not None and addr is not None and {ours, theirs} <= nm_aliases(obj, addr)


def nm_aliases(obj: str, addr: int) -> set[str]:
    """Names that `nm` gives the function containing addr, in the object and its debug file."""
    files = [obj]
    bid = elf_info_of_path(obj).build_id
    if bid and os.path.exists(build_id_path("/usr/lib/debug", bid)):
        files.append(build_id_path("/usr/lib/debug", bid))
    by_addr: dict[int, set[str]] = defaultdict(set)
    for f in files:
        for flags in (["-D"], []):
            out = subprocess.run(["nm", "--defined-only", "-S", *flags, f], capture_output=True,
                                 text=True).stdout
            for line in out.splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[2] in "tTWi":
                    by_addr[int(parts[0], 16)].add(parts[3])
    start = max((a for a in by_addr if a <= addr), default=None)
    return by_addr.get(start, set()) if start is not None else set()


def differential(recording: Path, options: SymbolizeOptions) -> tuple[int, list[str]]:
    """Every sampled user address: our name vs `addr2line -f` on the same ELF address."""
    engine = Engine(options)
    for b in iter_batches(str(recording)):
        engine.feed_metadata(b)
    windows = [w for b in iter_batches(str(recording)) for w in engine.feed(b, metadata=False)]
    profiles = [p for w in windows + engine.finish() for p in w]
    by_obj: dict[str, dict[int, str]] = defaultdict(dict)
    for p in profiles:
        for stack in p.stacks:
            for f in stack:
                if f.object and f.elf_addr is not None and f.object.startswith("/"):
                    by_obj[f.object][f.elf_addr] = f.name if f.resolved else "??"
    compared, diffs = 0, []
    for obj, ours in by_obj.items():
        theirs = addr2line_names(obj, sorted(ours))
        for addr, name in ours.items():
            if name != "??" and theirs[addr] != "??":
                compared += 1
                if not same_function(name, theirs[addr], obj, addr):
                    diffs.append(f"{obj}@{addr:#x}: ours {name}, addr2line {theirs[addr]}")
            elif (name == "??") != (theirs[addr] == "??"):
                diffs.append(f"{obj}@{addr:#x}: ours {name}, addr2line {theirs[addr]}")
    return compared, diffs


def test_same_names_as_addr2line(fixture_bins, tmp_path):
    rec = synthetic_recording(tmp_path / "r.parquet", fixture_bins / "workload-pie",
                              fixture_bins / "libfixture.so")
    compared, diffs = differential(rec, SymbolizeOptions(cache_dir=str(tmp_path / "c")))
    assert compared >= 5 and diffs == []


def libc_internal_function() -> tuple[str, int]:
    """A libc function that only libc6-dbg's .symtab names (absent from .dynsym)."""
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    bid = elf_info_of_path(libc).build_id
    dbg = build_id_path("/usr/lib/debug", bid or "")
    if not os.path.exists(dbg):
        pytest.fail(f"libc6-dbg is not installed ({dbg} missing); scripts/setup.sh installs it")
    full = read_elf_symbols_bytes(Path(dbg).read_bytes()).symtab
    dyn = read_elf_symbols_bytes(Path(libc).read_bytes()).dynsym
    exported = {dyn.name_at(i) for i in range(len(dyn))}
    dyn_addrs = set(dyn.addrs)
    for i in range(len(full)):
        name, addr, size = full.name_at(i), full.addrs[i], full.sizes[i]
        if size > 16 and name not in exported and addr not in dyn_addrs and b"." not in name:
            return name.decode(), addr + 4
    pytest.fail("no internal libc function found")


def test_libc6_dbg_names_internal_functions(fixture_bins, tmp_path, capsys):
    name, addr = libc_internal_function()
    rec = synthetic_recording(tmp_path / "r.parquet", fixture_bins / "workload-pie",
                              fixture_bins / "libfixture.so", extra_leaf=("libc.so", addr))
    rc, out, _ = symbolize(capsys, rec, "--cache-dir", tmp_path / "c1")
    assert rc == 0 and f";main;{name} 1" in out
    # --debug-dir adds to /usr/lib/debug; dropping the default is what loses libc6-dbg
    rc, out, err = symbolize(capsys, rec, "--debug-dir", tmp_path / "none",
                             "--no-default-debug-dir", "--cache-dir", tmp_path / "c2")
    assert f";{name} 1" not in out and "libc.so.6+0x" in out
    assert "libc.so.6" in err and "-dbgsym or -dbg" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_debuginfod_serves_a_stripped_fixture(fixture_bins, tmp_path, capsys):
    if not shutil.which("debuginfod"):
        pytest.fail("debuginfod is not installed; scripts/setup.sh installs it")
    bins = copy_bins(fixture_bins, tmp_path / "bins")
    rec = synthetic_recording(tmp_path / "r.parquet", bins / "workload-pie",
                              bins / "libfixture.so")
    served = tmp_path / "served"
    served.mkdir()
    bids = []
    for name in ("workload-pie", "libfixture.so"):
        bids.append(elf_info_of_path(str(bins / name)).build_id)
        subprocess.run(["objcopy", "--only-keep-debug", str(bins / name),
                        str(served / f"{name}.debug")], check=True)
        (bins / name).unlink()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        ["debuginfod", "-F", str(served), "-p", str(port), "-d", str(tmp_path / "db.sqlite"),
         "-t", "0", "-g", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # bounded wait for the first scan to index both
        ready = False
        while time.monotonic() < deadline and not ready:
            time.sleep(0.5)
            try:
                ready = all(requests.get(f"{url}/buildid/{b}/debuginfo", timeout=2)
                            .status_code == 200 for b in bids)
            except requests.RequestException:
                continue
        assert ready, "debuginfod did not index the debug files within 60 s"
        cache = tmp_path / "cache"
        rc, out, err = symbolize(capsys, rec, "--debuginfod-url", url, "--debug-dir",
                                 tmp_path / "none", "--cache-dir", cache)
        assert rc == 0 and shares(out) == pytest.approx(DESIGN, abs=0.03), err
        assert all((cache / "debuginfod" / b / "debuginfo").exists() for b in bids)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_unreachable_debuginfod_is_a_reason_not_a_crash(fixture_bins, tmp_path, capsys):
    bins = copy_bins(fixture_bins, tmp_path / "bins")
    rec = synthetic_recording(tmp_path / "r.parquet", bins / "workload-pie",
                              bins / "libfixture.so")
    strip_to_debug_tree([bins / "libfixture.so"], tmp_path / "unused")
    rc, out, err = symbolize(capsys, rec, "--debuginfod-url", f"http://127.0.0.1:{free_port()}",
                             "--debug-dir", tmp_path / "none", "--cache-dir", tmp_path / "c")
    assert rc == 0 and "alpha" in out and "libfixture.so+0x" in out
    assert "unreachable" in err
