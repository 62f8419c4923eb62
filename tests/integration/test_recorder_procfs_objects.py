"""Objects of a live process without a build ID (built by gcc) or unreadable, recorded with
a reason."""

from __future__ import annotations

import shutil
import subprocess

from recorder.objects import ObjectRegistry
from recorder.snapshots import ProcessTracker
from tests.helpers.fake_proc import fake_proc


def test_unreadable_and_buildid_less_objects_are_recorded_with_a_reason(tmp_path):
    proc = fake_proc(tmp_path, 10)
    mf = proc / "10" / "map_files"
    mf.mkdir()
    # an ELF without a build ID, and a file that is not ELF at all
    src = tmp_path / "x.c"
    src.write_text("int main(void){return 0;}\n")
    subprocess.run(["gcc", "-Wl,--build-id=none", "-o", str(tmp_path / "nobid"), str(src)],
                   check=True)
    shutil.copy(tmp_path / "nobid", mf / "55d0c0001000-55d0c0002000")
    (mf / "7f1000000000-7f1000100000").write_bytes(b"not an elf file at all")

    registry = ObjectRegistry(str(proc))
    rows = ProcessTracker(registry, None, str(proc)).observe(10)
    objects = {r["path"]: r for r in rows if r["record"] == "object"}
    server = objects["/opt/app/server"]
    assert server["build_id"] is None and server["reason"] == "no GNU build ID note"
    assert server["object_id"] == "/opt/app/server@08:01:1234"
    assert server["phdrs"] and server["elf_type"] == "DYN"
    libc = objects["/usr/lib/libc.so.6 (deleted)"]
    assert libc["reason"].startswith("unreadable") and "not an ELF" in libc["reason"]
    process = next(r for r in rows if r["record"] == "process")
    assert process["comm"] == "server (x)" and process["ppid"] == 1
    assert process["cgroup"] == "/system.slice/nginx.service"
    mappings = [r for r in rows if r["record"] == "mapping"]
    assert len(mappings) == 4 and {m["maps_seq"] for m in mappings} == {0}
