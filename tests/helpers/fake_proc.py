"""A fake /proc tree for the recorder's procfs readers (no tests here)."""

from __future__ import annotations

import os
from pathlib import Path

MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /opt/app/server
55d0c0001000-55d0c0002000 r-xp 00001000 08:01 1234 /opt/app/server
7f0000000000-7f0000001000 r-xp 00000000 00:00 0
7f1000000000-7f1000100000 r-xp 00028000 08:01 99 /usr/lib/libc.so.6 (deleted)
7ffd0000000-7ffd0002000 r-xp 00000000 00:00 0                          [vdso]
"""


def fake_proc(tmp_path: Path, pid: int, maps: str = MAPS, comm: str = "server (x)") -> Path:
    d = tmp_path / "proc" / str(pid)
    d.mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "stat").write_text(f"{pid} ({comm}) S 1 {pid} {pid} 0 -1\n")
    (d / "maps").write_text(maps)
    (d / "cgroup").write_text("0::/system.slice/nginx.service\n")
    uid = os.getuid()  # the process's user owns its perf map (recorder/perfmap.py)
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    return tmp_path / "proc"
