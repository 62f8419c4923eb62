"""Files of other users that the root recorder reads: /tmp/perf-PID.map and mapped paths.
GIVEN a perf map that a local user made hostile, WHEN the recorder reads it, THEN it neither
blocks, nor follows a link, nor reads what that user could not, nor more than a bounded size.

Real processes run as nobody (setpriv) so ownership and /proc/PID/root are the kernel's."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from recorder import rootfs
from recorder.objects import ObjectRegistry
from recorder.perfmap import PerfMapReader
from recorder.procfs import Mapping
from recorder.snapshots import ProcessTracker

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

pytestmark = pytest.mark.root  # to act as an unprivileged user (setpriv, util-linux)


@pytest.fixture
def victim():
    """A process of nobody's; yields (pid, its perf map path); removes the map afterwards."""
    proc = subprocess.Popen([*AS_NOBODY, "sleep", "60"])
    path = Path(f"/tmp/perf-{proc.pid}.map")
    status = Path(f"/proc/{proc.pid}/status")
    while f"Uid:\t{NOBODY}\t" not in status.read_text():  # setpriv has not dropped yet
        time.sleep(0.01)
    try:
        yield proc.pid, path
    finally:
        proc.kill()
        proc.wait()
        path.unlink(missing_ok=True)


def as_nobody(*argv: str) -> None:
    subprocess.run([*AS_NOBODY, *argv], check=True)


def tracker() -> ProcessTracker:
    return ProcessTracker(ObjectRegistry(), None)


@pytest.mark.timeout(20)
def test_a_fifo_does_not_block_and_is_ignored(victim, capsys):
    pid, path = victim
    as_nobody("mkfifo", str(path))
    assert tracker().perfmap_rows(pid) == []  # the old open() blocked here forever
    assert f"ignored /tmp/perf-{pid}.map of pid {pid}: not a regular file" in \
        capsys.readouterr().err


def test_a_symlink_to_kallsyms_is_not_followed(victim, capsys):
    pid, path = victim
    as_nobody("ln", "-s", "/proc/kallsyms", str(path))
    # kallsyms lines such as `ffffffff8a000000 D name` parse as perf map lines (D is hex)
    assert tracker().perfmap_rows(pid) == []
    assert "a symbolic link" in capsys.readouterr().err


def test_a_symlink_to_a_root_only_file_is_not_followed(victim, tmp_path):
    pid, path = victim
    secret = tmp_path / "secret"
    secret.write_text("deadbeef 10 root_only_secret\n")
    secret.chmod(0o600)
    as_nobody("ln", "-s", str(secret), str(path))
    rows = tracker().perfmap_rows(pid)
    assert not [r for r in rows if "root_only_secret" in r["name"]]


def test_a_map_planted_by_another_user_is_ignored(victim, capsys):
    """Another user creates /tmp/perf-<victim's pid>.map first, to name the victim's JIT code."""
    pid, path = victim
    path.write_text("1000 10 planted\n")
    os.chown(path, 12345, 12345)
    assert tracker().perfmap_rows(pid) == []
    assert "owned by uid 12345" in capsys.readouterr().err


def test_a_hard_link_to_a_root_file_is_ignored(victim, tmp_path):
    """With fs.protected_hardlinks=0 a user can hard-link a root file into /tmp; the
    recorder must not read it on the user's behalf (root made the link here)."""
    pid, path = victim
    secret = Path("/tmp") / f"root-secret-{pid}"
    secret.write_text("deadbeef 10 root_only_secret\n")
    try:
        os.link(secret, path)
        assert tracker().perfmap_rows(pid) == []
    finally:
        secret.unlink()


def test_the_owners_map_is_read_incrementally_and_only_whole_lines(victim):
    pid, path = victim
    as_nobody("sh", "-c", f"printf '1000 10 first\\n2000 20 sec' > {path}")
    t = tracker()
    assert [(r["addr"], r["size"], r["name"]) for r in t.perfmap_rows(pid)] == \
        [(0x1000, 0x10, "first")]  # `sec` is still being written
    as_nobody("sh", "-c", f"printf 'ond\\n3000 30 third\\n' >> {path}")
    assert [r["name"] for r in t.perfmap_rows(pid)] == ["second", "third"]
    assert t.perfmap_rows(pid) == []  # nothing new


def test_a_rewritten_map_is_read_again_from_the_start(victim):
    pid, path = victim
    as_nobody("sh", "-c", f"echo '1000 10 old' > {path}")
    t = tracker()
    assert [r["name"] for r in t.perfmap_rows(pid)] == ["old"]
    as_nobody("sh", "-c", f"rm {path}; echo '1000 10 new' > {path}")
    assert [r["name"] for r in t.perfmap_rows(pid)] == ["new"]


def test_reads_stop_at_the_cap_and_say_so(victim):
    pid, path = victim
    line = "1000 10 f\n"
    as_nobody("sh", "-c", f"yes '{line.strip()}' | head -n 1000 > {path}")
    notes: list[str] = []
    reader = PerfMapReader(max_bytes=100 * len(line), warn=notes.append)
    assert len(reader.read_new(pid)) == 100
    assert reader.read_new(pid) == []  # the cap holds across reads
    assert notes == [f"/tmp/perf-{pid}.map of pid {pid} is larger than 1000 bytes; entries "
                     "after that are not recorded"]


def test_a_line_without_end_is_skipped_not_reread(victim):
    pid, path = victim
    as_nobody("sh", "-c", f"head -c 200000 /dev/zero | tr '\\0' a > {path}; "
              f"echo >> {path}; echo '1000 10 after' >> {path}")
    reader = PerfMapReader(warn=lambda _m: None)
    assert [r["name"] for r in reader.read_new(pid)] == ["after"]


def fake_proc(tmp_path: Path, pid: int, status: str) -> tuple[Path, Path]:
    """A /proc with one process whose root is a directory of our making."""
    proc, root = tmp_path / "proc", tmp_path / "root"
    (proc / str(pid)).mkdir(parents=True)
    root.mkdir()
    (proc / str(pid) / "root").symlink_to(root)
    (proc / str(pid) / "status").write_text(status)
    return proc, root


@pytest.fixture
def host_dir():
    """A host directory outside /tmp (inside the fake root, /tmp is the link itself)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp"))
    yield path
    shutil.rmtree(path)


def test_a_symlinked_tmp_in_the_process_root_does_not_lead_out(tmp_path, host_dir):
    """In a container, /tmp -> /some/host/dir is resolved inside the container's root, not
    on the host (where the old path /proc/PID/root/tmp/... led)."""
    outside = host_dir
    (outside / "perf-77.map").write_text("1000 10 host_secret\n")
    proc, root = fake_proc(tmp_path, 77, "Uid:\t0\t0\t0\t0\n")
    (root / "tmp").symlink_to(outside)  # absolute: names a host directory
    t = ProcessTracker(ObjectRegistry(str(proc)), None, proc=str(proc))
    assert t.perfmap_rows(77) == []
    # the same link inside the root is followed inside it
    inside = root / str(outside).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "perf-77.map").write_text("1000 10 in_container\n")
    assert [r["name"] for r in t.perfmap_rows(77)] == ["in_container"]


def test_the_file_name_uses_the_pid_inside_the_process_namespace(tmp_path):
    """A containerized JIT names its map by the pid it sees (perf does the same: nsinfo)."""
    proc, root = fake_proc(tmp_path, 5000, "Uid:\t0\t0\t0\t0\nNSpid:\t5000\t7\n")
    (root / "tmp").mkdir()
    (root / "tmp" / "perf-7.map").write_text("1000 10 jitted\n")
    reader = PerfMapReader(proc=str(proc))
    assert [(r["pid"], r["name"]) for r in reader.read_new(5000)] == [(5000, "jitted")]


def test_without_openat2_a_symlinked_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(rootfs, "_have_openat2", False)
    proc, root = fake_proc(tmp_path, 77, "Uid:\t0\t0\t0\t0\n")
    (root / "real").mkdir()
    (root / "real" / "f").write_text("x")
    (root / "tmp").symlink_to("real")
    fd = rootfs.open_in_root(77, "/real/f", str(proc))
    assert os.read(fd, 1) == b"x"
    os.close(fd)
    for path in ("/tmp/f", "/real/../real/f"):
        with pytest.raises(OSError):
            rootfs.open_in_root(77, path, str(proc))


@pytest.mark.timeout(20)
def test_a_mapped_path_replaced_by_a_fifo_does_not_block(tmp_path):
    """When map_files cannot be opened (the mapping went away meanwhile), the object is read
    by its path, which the process's user may have replaced with a FIFO."""
    proc, root = fake_proc(tmp_path, 77, "Uid:\t0\t0\t0\t0\n")
    (proc / "77" / "map_files").mkdir()
    (root / "app").mkdir()
    os.mkfifo(root / "app" / "server")
    m = Mapping(start=0x1000, end=0x2000, perms="r-xp", file_offset=0, dev="fd:01", inode=5,
                path="/app/server")
    _, facts = ObjectRegistry(str(proc)).object_for(77, m)
    assert facts is not None and facts.build_id is None
    assert "not a regular file" in (facts.reason or "")
