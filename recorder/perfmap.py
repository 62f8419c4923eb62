"""/tmp/perf-PID.map, the perf JIT interface: read without trusting its owner, only where it grew.

Format (tools/perf/Documentation/jit-interface.txt): one `START SIZE symbolname` line per
JIT-compiled function, START and SIZE in hex, appended while the process runs.

The file is written by the profiled process's user, who may be any local user, and the
recorder reads it as root. perf ignores a perf map "not owned by current user or root"
(tools/perf/util/symbol.c, dso__load); this reader does the same and more:
- it opens the file inside the process's root (recorder/rootfs.py: no FIFO blocking, no
  symlink followed, neither as the last component nor as a way out of the process's root);
- it requires a regular file owned by one of the process's uids (real, effective, saved,
  filesystem: /proc/PID/status) or by root. A root-owned file of a non-root process must have
  a single link: a hard link made to a root file elsewhere is refused even where
  fs.protected_hardlinks is off;
- it reads at most PERF_MAP_MAX_BYTES per process, in chunks, and remembers per pid where it
  stopped (after the last complete line), so a later read only reads what was appended.
A process that exited keeps its perf map (perf reads it at report time, long after): what it
wrote after the last read is read once more after its exit, with the uids it had, if it lived
in the recorder's mount namespace (so its /tmp is ours); one in a container's is lost with it.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass

from recorder.rootfs import open_in_root
from recording.schema import Row

# 64 MiB is about a million `START SIZE name` lines: more than the JIT code of a large JVM or
# Node.js process names (a JVM's default 240 MB code cache holds a few hundred thousand
# methods), and still a bound on what a hostile or runaway file (a sparse file costs its
# owner nothing) makes the root recorder read, hold as rows and write into every recording.
PERF_MAP_MAX_BYTES = 64 << 20
CHUNK_BYTES = 1 << 20
# A line longer than this is not a perf map entry (kernel symbol names stop at 512 bytes,
# KSYM_NAME_LEN; JIT names with full signatures stay well under 64 KiB): it is skipped, so a
# file without newlines cannot make every read re-read and re-join the same tail.
MAX_LINE_BYTES = 64 << 10
FINGERPRINT_BYTES = 64


@dataclass
class _Cursor:
    dev: int
    ino: int
    offset: int = 0  # bytes consumed; always just after a newline (or a skipped long line)
    last: bytes = b""  # the bytes just before offset: tells an append from a rewrite

    def continues(self, fd: int, st: os.stat_result) -> bool:
        # A file removed and written again may get the same inode number at once (ext4 reuses
        # freed inodes), so the bytes already read must also still be there.
        if (self.dev, self.ino) != (st.st_dev, st.st_ino) or st.st_size < self.offset:
            return False
        return os.pread(fd, len(self.last), self.offset - len(self.last)) == self.last


@dataclass(frozen=True)
class ProcessIds:
    uids: frozenset[int]
    nspid: int  # the pid inside the process's own pid namespace: the one in its file name


def process_ids(pid: int, proc: str = "/proc") -> ProcessIds | None:
    """Uids and innermost pid from /proc/PID/status (fs/proc/array.c, task_state); None if
    the process is gone."""
    uids: frozenset[int] | None = None
    nspid = pid
    try:
        with open(f"{proc}/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "Uid":
                    uids = frozenset(int(v) for v in value.split())
                elif key == "NSpid" and value.split():
                    nspid = int(value.split()[-1])  # kernels >= 4.1; the last is innermost
    except (OSError, ValueError):
        return None
    return ProcessIds(uids, nspid) if uids else None


def _mount_ns(pid: int, proc: str) -> int | None:
    try:
        return os.stat(f"{proc}/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def refusal(st: os.stat_result, ids: ProcessIds) -> str | None:
    """Why a perf map with these attributes is not read, or None."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid not in ids.uids and st.st_uid != 0:
        owner = "/".join(str(u) for u in sorted(ids.uids))
        return f"owned by uid {st.st_uid}, not by the process's user (uid {owner}) or root"
    if st.st_uid == 0 and 0 not in ids.uids and st.st_nlink > 1:
        return "a hard link to a root-owned file of a process that does not run as root"
    return None


def parse_lines(data: bytes, pid: int) -> list[Row]:
    rows: list[Row] = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) != 3:
            continue
        try:
            addr, size = int(parts[0], 16), int(parts[1], 16)
        except ValueError:
            continue
        if not (0 <= addr < 1 << 64 and 0 <= size < 1 << 64):
            continue  # the schema's columns are uint64
        rows.append({"record": "perfmap", "pid": pid, "addr": addr, "size": size,
                     "name": parts[2]})
    return rows


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n} bytes"


def _stderr(message: str) -> None:
    print(f"ebpf-record: {message}", file=sys.stderr)


class PerfMapReader:
    def __init__(self, proc: str = "/proc", max_bytes: int = PERF_MAP_MAX_BYTES,
                 warn: Callable[[str], None] = _stderr) -> None:
        self.proc = proc
        self.max_bytes = max_bytes
        self._warn = warn
        self._cursors: dict[int, _Cursor] = {}
        self._warned: set[tuple[int, str]] = set()
        self._gone_ids: dict[int, ProcessIds] = {}  # for a last read after the process exits
        self._mnt_ns = _mount_ns(os.getpid(), proc)

    def remember(self, pid: int) -> None:
        """Keep the process's uids while it lives, for a last read of its map after its exit;
        forget them if it lives in another mount namespace (its /tmp is not ours)."""
        ids = process_ids(pid, self.proc)
        if ids is None:
            return
        if self._mnt_ns is not None and _mount_ns(pid, self.proc) == self._mnt_ns:
            self._gone_ids[pid] = ids
        else:
            self._gone_ids.pop(pid, None)

    def note_uid(self, pid: int, uid: int) -> None:
        """The uid the kernel saw the process run as (its BPF event), for a process that may
        be gone before /proc tells more: its map is then read in our /tmp, still only if that
        user (or root) owns it, as a regular file that is not a hard link to a root file. A
        process seen alive in another mount namespace is not (remember() drops it)."""
        self._gone_ids.setdefault(pid, ProcessIds(frozenset({uid}), pid))

    def read_new(self, pid: int) -> list[Row]:
        """Rows for the entries appended since the last read of this pid's perf map."""
        ids = process_ids(pid, self.proc)
        root_pid = pid
        if ids is None:
            # gone: once more, in our own root (the same mount namespace as the process's)
            ids, root_pid = self._gone_ids.pop(pid, None), os.getpid()
            if ids is None:
                return []
        path = f"/tmp/perf-{ids.nspid}.map"
        try:
            fd = open_in_root(root_pid, path, self.proc)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._note(pid, f"ignored {path} of pid {pid}: a symbolic link")
            elif exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ESRCH):
                self._note(pid, f"ignored {path} of pid {pid}: {exc.strerror}")
            return []
        try:
            st = os.fstat(fd)
            why = refusal(st, ids)
            if why is not None:
                self._note(pid, f"ignored {path} of pid {pid}: {why} (as perf does)")
                return []
            cur = self._cursors.get(pid)
            if cur is None or not cur.continues(fd, st):
                cur = self._cursors[pid] = _Cursor(st.st_dev, st.st_ino)  # new or rewritten
            if st.st_size > self.max_bytes:
                self._note(pid, f"{path} of pid {pid} is larger than {_size(self.max_bytes)}; "
                           "entries after that are not recorded")
            return self._read(fd, pid, cur)
        finally:
            os.close(fd)

    def forget(self, pid: int) -> None:
        """The next read starts from the beginning (a forgotten process gets a full snapshot)."""
        self._cursors.pop(pid, None)
        self._gone_ids.pop(pid, None)

    def _read(self, fd: int, pid: int, cur: _Cursor) -> list[Row]:
        rows: list[Row] = []
        tail = b""
        while cur.offset + len(tail) < self.max_bytes:
            want = min(CHUNK_BYTES, self.max_bytes - cur.offset - len(tail))
            chunk = os.pread(fd, want, cur.offset + len(tail))
            if not chunk:
                break  # an unfinished last line stays for the next read
            data = tail + chunk
            end = data.rfind(b"\n") + 1
            rows.extend(parse_lines(data[:end], pid))
            cur.offset += end
            if end:
                cur.last = data[max(0, end - FINGERPRINT_BYTES):end]
            tail = data[end:]
            if len(tail) > MAX_LINE_BYTES:
                cur.offset += len(tail)  # not an entry; its rest fails to parse and is skipped
                cur.last = tail[-FINGERPRINT_BYTES:]
                tail = b""
        return rows

    def _note(self, pid: int, message: str) -> None:
        if (pid, message) not in self._warned:
            self._warned.add((pid, message))
            self._warn(message)
