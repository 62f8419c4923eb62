"""Signal frames: the trampoline's entry and the interrupted pc after it are exact addresses,
not return addresses (symbolizer/sigframes.py). Stacks are written as bpf/profile.c's
signal_step records them, at addresses GNU nm gives, so the expected names are nm's."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recording.elf import elf_info_of_path
from recording.reader import iter_batches
from recording.schema import SCHEMA, rows_to_batch
from symbolizer.engine import Engine
from symbolizer.options import SymbolizeOptions
from tests.conftest import skip_or_fail

T0 = 1_764_057_600_000_000_000
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
SOURCE = r"""
__attribute__((noinline)) int before(int x) { return x * 3 + 1; }
__attribute__((noinline)) int busy(int x) { return before(x) ^ 5; }
__attribute__((noinline)) void in_handler(void) { }
int main(int argc, char **argv) { (void)argv; in_handler(); return busy(argc); }
"""


def nm(path: str | Path) -> dict[str, int]:
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {p[2]: int(p[0], 16) for line in out.splitlines() if len(p := line.split()) == 3}


def return_address(exe: Path, caller: str, callee: str) -> int:
    """The address after `caller`'s call to `callee`, as objdump disassembles it."""
    out = subprocess.run(["objdump", "-d", str(exe)], capture_output=True, text=True,
                         check=True).stdout
    body = out.split(f"<{caller}>:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    for line, nxt in itertools.pairwise(body):
        if f"<{callee}>" in line and "call" in line:
            return int(nxt.split(":")[0], 16)
    raise LookupError(f"{caller} does not call {callee}")


def libc_symbol(name: str) -> int | None:
    """An address of glibc's from its debug file (libc6-dbg), or None."""
    bid = elf_info_of_path(LIBC).build_id or ""
    dbg = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug")
    return nm(dbg).get(name) if dbg.exists() else None


class Layout:
    """Objects mapped at chosen bases, as a process snapshot of the recording has them."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.bases: dict[str, int] = {}

    def map(self, path: str, base: int) -> None:
        info = elf_info_of_path(path)
        self.bases[path] = base
        self.rows.append({"record": "object", "object_id": path, "path": path,
                          "build_id": info.build_id, "elf_type": info.elf_type,
                          "phdrs": [{"offset": s.offset, "vaddr": s.vaddr, "filesz": s.filesz,
                                     "memsz": s.memsz, "flags": s.flags} for s in info.loads]})
        for s in info.loads:
            if s.flags & 1:
                page = s.vaddr & ~0xFFF
                self.rows.append({"record": "mapping", "pid": 7, "maps_seq": 0,
                                  "start": base + page, "end": base + s.vaddr + s.memsz,
                                  "file_offset": s.offset & ~0xFFF, "path": path,
                                  "perms": "r-xp", "object_id": path})

    def abs(self, path: str, elf_addr: int) -> int:
        return self.bases[path] + elf_addr


def symbolize(tmp_path: Path, layout: Layout, stack: list[int], unwinder: str) -> list[str]:
    rows = [{"record": "process", "pid": 7, "maps_seq": 0, "time_ns": T0}, *layout.rows,
            {"record": "sample", "window_start_ns": T0, "window_end_ns": T0 + 10**9, "pid": 7,
             "comm": "sig", "count": 1, "user_stack": stack, "kernel_stack": [],
             "kernel_stack_error": -14, "user_unwinder": unwinder},
            {"record": "window", "window_start_ns": T0, "window_end_ns": T0 + 10**9,
             "count": 1}]
    path = tmp_path / f"{unwinder}.parquet"
    pq.write_table(SCHEMA.empty_table().from_batches([rows_to_batch(rows)], schema=SCHEMA), path)
    engine = Engine(SymbolizeOptions(cache_dir=None))
    profiles = [p for b in iter_batches(str(path)) for w in engine.feed(b) for p in w]
    (stack_frames,) = profiles[0].stacks
    return [f.name for f in stack_frames[1:]]  # root first, without the comm


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sig")
    (d / "s.c").write_text(SOURCE)
    # -falign-functions=1: busy starts right after before's last byte, so busy's first
    # instruction minus one is in `before`
    subprocess.run(["gcc", "-O1", "-fno-inline", "-falign-functions=1", "-o", str(d / "s"),
                    str(d / "s.c")], check=True)
    return d / "s"


def test_interrupted_pc_at_a_function_start_after_the_trampoline(exe, tmp_path):
    restore = libc_symbol("__restore_rt")
    if restore is None:
        skip_or_fail("no glibc debug file here (libc6-dbg): __restore_rt is unnamed")
    syms = nm(exe)
    assert syms["busy"] - 1 >= syms["before"], "busy must follow before directly"
    layout = Layout()
    layout.map(str(exe), 0x5555_0000_0000)
    layout.map(LIBC, 0x7F00_0000_0000)
    e = str(exe)
    # leaf in the handler; the handler's return address is __restore_rt's first byte; then
    # the interrupted instruction, the first of busy (signal_step's exact pc); then main's
    # call site as a return address
    stack = [layout.abs(e, syms["in_handler"]), layout.abs(LIBC, restore),
             layout.abs(e, syms["busy"]), layout.abs(e, return_address(exe, "main", "busy"))]
    assert symbolize(tmp_path, layout, stack, "dwarf") == [
        "main", "busy", "__restore_rt", "in_handler"]
    # a frame-pointer walk skips the interrupted frame: what follows is a return address
    assert symbolize(tmp_path, layout, stack, "kernel-fp") == [
        "main", "before", "__restore_rt", "in_handler"]


def test_leaf_inside_the_trampoline_makes_the_next_entry_exact(exe, tmp_path):
    """A sample during rt_sigreturn itself: the leaf is in __restore_rt; unwinding it (CFI
    with the signal-frame augmentation) gives the interrupted pc."""
    restore = libc_symbol("__restore_rt")
    if restore is None:
        skip_or_fail("no glibc debug file here (libc6-dbg)")
    syms = nm(exe)
    layout = Layout()
    layout.map(str(exe), 0x5555_0000_0000)
    layout.map(LIBC, 0x7F00_0000_0000)
    e = str(exe)
    stack = [layout.abs(LIBC, restore + 7), layout.abs(e, syms["busy"]),
             layout.abs(e, return_address(exe, "main", "busy"))]
    assert symbolize(tmp_path, layout, stack, "dwarf+fp") == ["main", "busy", "__restore_rt"]
