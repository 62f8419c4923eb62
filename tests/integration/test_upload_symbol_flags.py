"""`ebpf-upload RECORDING` symbolizes with the flags of ebpf-symbolize (issue 12: it used the
default options, so a recording from another machine could not be given its --sysroot)."""

from __future__ import annotations

import shutil

from tests.helpers.crafted import crafted_recording, nm_address
from tests.helpers.profiles import names
from uploader.options import options_for
from uploader.replay import read_windows


def upload_names(tmp_path, rec, *flags: str) -> dict[str, int]:
    o = options_for([str(rec), "--application-name", "a", "--allow-old",
                     "--cache-dir", str(tmp_path / "cache"), *flags])
    out: dict[str, int] = {}
    for w in read_windows(o):
        out.update(names(w))
    return out


def test_sysroot_reaches_the_symbolizer(fixture_bins, tmp_path):
    lib = fixture_bins / "libfixture.so"
    # GIVEN a recording of a library at a path this machine does not have
    rec = crafted_recording(tmp_path / "r.parquet", path="/opt/app/libfixture.so",
                            build_id=None, elf_addr=nm_address(lib, "lib_beta") + 4,
                            layout_of=lib)
    (tmp_path / "root/opt/app").mkdir(parents=True)
    shutil.copy(lib, tmp_path / "root/opt/app/libfixture.so")
    # WHEN it is uploaded without, then with, the root the library is under
    without = upload_names(tmp_path, rec, "--no-default-debug-dir")
    with_root = upload_names(tmp_path, rec, "--sysroot", str(tmp_path / "root"),
                             "--no-default-debug-dir")
    # THEN only the second names the function
    assert not any("lib_beta" in k for k in without)
    assert with_root == {"victim;lib_beta": 7}
