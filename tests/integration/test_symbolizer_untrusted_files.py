"""Files other users control, opened by the symbolizer running as root (issue 8 #3).

GIVEN a process whose binary its owner (an unprivileged user, uid 65534) replaced with a FIFO
after the recording, WHEN root symbolizes the recording, THEN the symbolizer does not block:
the FIFO is refused as "not a regular file" and the run ends. The old code blocked in open()
forever, which stalled `ebpf-record | ebpf-symbolize - | ebpf-upload -`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from recording.untrusted import UntrustedFileError, open_regular, resolve_in_root
from tests.conftest import tool
from tests.helpers.crafted import crafted_recording, nm_address

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
HANG_S = 20  # the symbolizer finishes these recordings in about a second


def as_nobody(*cmd: str) -> None:
    subprocess.run([*AS_NOBODY, *cmd], check=True)


@pytest.fixture
def attacker_dir() -> Iterator[Path]:
    """A directory owned by uid 65534 that it can reach (pytest's tmp_path is root-only)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    top = Path(tempfile.mkdtemp(prefix="ebpf-sym-attack-"))
    try:
        top.chmod(0o755)
        d = top / "home"
        d.mkdir()
        os.chown(d, NOBODY, NOBODY)
        yield d
    finally:
        shutil.rmtree(top)


def symbolize_with_timeout(args: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([tool("ebpf-symbolize"), *args], capture_output=True, text=True,
                              timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ebpf-symbolize hung for {HANG_S} s on a FIFO")


def test_fifo_at_the_recorded_binary_path_does_not_hang(fixture_bins, attacker_dir,
                                                         tmp_path):
    lib = fixture_bins / "libfixture.so"
    prog = attacker_dir / "prog"
    as_nobody("mkfifo", str(prog))  # the user's binary, deleted and replaced
    rec = crafted_recording(tmp_path / "r.parquet", path=f"{prog} (deleted)", build_id=None,
                            elf_addr=nm_address(lib, "lib_beta") + 4, layout_of=lib)
    r = symbolize_with_timeout([str(rec), "--cache-dir", str(tmp_path / "c")])
    assert r.returncode == 0, r.stderr
    assert f"{prog} unreadable (a FIFO, not a regular file: refused)" in r.stderr
    assert "victim;prog+0x" in r.stdout  # the frame stays, unresolved, with its offset


def test_fifo_as_the_gnu_debuglink_file_does_not_hang(fixture_bins, attacker_dir, tmp_path):
    # the binary is real (and stripped); its .gnu_debuglink names a file next to it, which
    # the user made a FIFO: the old code hung computing its CRC
    lib = fixture_bins / "libfixture.so"
    prog = attacker_dir / "libfixture.so"
    shutil.copy(lib, tmp_path / "lib.so")
    subprocess.run(["objcopy", "--only-keep-debug", str(lib), str(tmp_path / "lib.debug")],
                   check=True)
    subprocess.run(["strip", "--strip-all", str(tmp_path / "lib.so")], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={tmp_path / 'lib.debug'}",
                    str(tmp_path / "lib.so")], check=True)
    shutil.copy(tmp_path / "lib.so", prog)
    os.chown(prog, NOBODY, NOBODY)
    as_nobody("mkfifo", str(attacker_dir / "lib.debug"))
    from recording.elf import elf_info_of_path

    rec = crafted_recording(tmp_path / "r.parquet", path=str(prog),
                            build_id=elf_info_of_path(str(prog)).build_id,
                            elf_addr=nm_address(lib, "frame_dummy") + 4, layout_of=lib)
    r = symbolize_with_timeout([str(rec), "--cache-dir", str(tmp_path / "c"),
                                "--debug-dir", str(tmp_path / "no-debug")])
    assert r.returncode == 0, r.stderr
    assert "lib.debug unreadable (a FIFO, not a regular file: refused)" in r.stderr
    assert "victim;libfixture.so+0x" in r.stdout  # a static function: only lib.debug has it


def test_symlink_at_the_recorded_binary_path_is_not_followed(fixture_bins, attacker_dir,
                                                            tmp_path):
    # a user points their deleted binary's path at a root-only binary: its symbols must not
    # land in the profile (the recorded path had no symlink: /proc/PID/maps resolves them)
    lib = fixture_bins / "libfixture.so"
    secret = tmp_path / "root-only.so"
    shutil.copy(lib, secret)
    secret.chmod(0o600)
    prog = attacker_dir / "prog"
    as_nobody("ln", "-s", str(secret), str(prog))
    rec = crafted_recording(tmp_path / "r.parquet", path=str(prog), build_id=None,
                            elf_addr=nm_address(lib, "lib_beta") + 4, layout_of=lib)
    r = symbolize_with_timeout([str(rec), "--cache-dir", str(tmp_path / "c")])
    assert r.returncode == 0, r.stderr
    assert "lib_beta" not in r.stdout
    assert f"{prog} unreadable (a symbolic link: refused)" in r.stderr


def test_lines_does_not_hang_on_a_fifo(tmp_path):
    # --lines opens the debug file again, later: a FIFO swapped in then must not hang either
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = ("import sys; from symbolizer.lines import resolve_lines; "
            f"print(resolve_lines({str(fifo)!r}, [0x1000]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=HANG_S)
    assert r.returncode == 0 and r.stdout.strip() == "{}"


def test_open_regular_refuses_without_opening(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UntrustedFileError, match="a FIFO"):
        open_regular(str(fifo))
    with pytest.raises(UntrustedFileError, match="a character device"):
        open_regular("/dev/zero")
    with pytest.raises(UntrustedFileError, match="a directory"):
        open_regular(str(tmp_path))
    with pytest.raises(UntrustedFileError, match="NUL"):
        open_regular("/etc/passwd\0x")
    (tmp_path / "f").write_bytes(b"ok")
    os.symlink(tmp_path / "f", tmp_path / "link")
    with pytest.raises(UntrustedFileError, match="a symbolic link"):
        open_regular(str(tmp_path / "link"), follow_symlinks=False)
    with open_regular(str(tmp_path / "link")) as f:
        assert f.read() == b"ok"


def test_resolve_in_root_never_leaves_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/libc.so.6").write_bytes(b"x")
    os.symlink("/usr/lib", root / "lib")  # merged /usr, as images have it
    os.symlink("/../../../../etc", root / "usr/evil")
    os.symlink("../../..", root / "usr/lib/up")
    real = str(root.resolve())
    assert resolve_in_root(str(root), "/lib/libc.so.6") == f"{real}/usr/lib/libc.so.6"
    assert resolve_in_root(str(root), "/../../etc/shadow") == f"{real}/etc/shadow"
    assert resolve_in_root(str(root), "/usr/evil/shadow") == f"{real}/etc/shadow"
    assert resolve_in_root(str(root), "/usr/lib/up/usr/lib/up/etc/x") == f"{real}/etc/x"
    os.symlink("loop", root / "loop")
    with pytest.raises(OSError, match="too many symbolic links"):
        resolve_in_root(str(root), "/loop/x")
