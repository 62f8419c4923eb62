"""The Python stacks of a live process, walked from user space with the generated offsets.

This is what bpf/profile.c does per sample, written once in Python: tests run it against live
interpreters of every supported version, which checks the offsets the BPF walker is given and
gives the BPF walker a reference to be compared with. Per version:
- thread states: _PyRuntime.interpreters.head -> PyInterpreterState.(tstate_head |
  threads.head) -> PyThreadState.next ...;
- the top frame: 3.8-3.10 `tstate->frame` (PyFrameObject); 3.11-3.12
  `tstate->cframe->current_frame`; 3.13 `tstate->current_frame` (_PyInterpreterFrame);
- each frame's code object and instruction: 3.8-3.9 `f_lasti` counts bytes, 3.10 code units;
  3.11+ `prev_instr` / `instr_ptr` point into the code object's co_code_adaptive, so the index
  is (pointer - (code + offsetof(co_code_adaptive))) / 2;
- 3.12+ entry frames owned by the C stack (FRAME_OWNED_BY_CSTACK) run no code: skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from recorder.python.layout import ABSENT
from recorder.python.memory import ProcessMemory
from recorder.python.process import PythonProcess
from recording.pyframes import NO_INSTRUCTION, code_checksum

MAX_THREADS = 4096
MAX_FRAMES = 1024


@dataclass(frozen=True)
class PyFrame:
    code_addr: int
    checksum: int
    instr_index: int  # 2-byte code units; NO_INSTRUCTION for a frame not started


@dataclass(frozen=True)
class PyThread:
    tstate: int
    thread_id: int  # pthread_self() of the thread (threading.get_ident())
    native_thread_id: int | None  # its TID (3.11+)
    frames: tuple[PyFrame, ...]  # leaf first


def thread_states(info: PythonProcess, mem: ProcessMemory | None = None) -> list[int]:
    """Addresses of the thread states of every interpreter, in list order."""
    o = info.offsets
    mem = mem or ProcessMemory(info.pid)
    out: list[int] = []
    interp = mem.pointer(info.runtime_addr + o.runtime_interpreters_head)
    while interp is not None and len(out) < MAX_THREADS:
        tstate = mem.pointer(interp + o.interp_threads_head)
        while tstate is not None and len(out) < MAX_THREADS:
            out.append(tstate)
            tstate = mem.pointer(tstate + o.tstate_next)
        interp = mem.pointer(interp + o.interp_next)
    return out


def walk_thread(info: PythonProcess, tstate: int, mem: ProcessMemory | None = None
                ) -> PyThread | None:
    o = info.offsets
    mem = mem or ProcessMemory(info.pid)
    thread_id = mem.u64(tstate + o.tstate_thread_id)
    if thread_id is None:
        return None
    native = None
    if o.tstate_native_thread_id != ABSENT:
        native = mem.u64(tstate + o.tstate_native_thread_id)
    frame = mem.pointer(tstate + o.tstate_frame)
    if frame is not None and o.cframe_current_frame != ABSENT:
        frame = mem.pointer(frame + o.cframe_current_frame)
    frames: list[PyFrame] = []
    while frame is not None and len(frames) < MAX_FRAMES:
        got = _frame(info, mem, frame)
        if got is not None:
            frames.append(got)
        frame = mem.pointer(frame + o.frame_back)
    return PyThread(tstate, thread_id, native, tuple(frames))


def _frame(info: PythonProcess, mem: ProcessMemory, frame: int) -> PyFrame | None:
    o = info.offsets
    if o.frame_owned_by_cstack != ABSENT:
        owner = mem.read(frame + o.frame_owner, 1)
        if owner is None or owner[0] == o.frame_owned_by_cstack:
            return None
    code = mem.pointer(frame + o.frame_code)
    if code is None:
        return None
    if info.code_type is not None and mem.pointer(code + o.object_type) != info.code_type:
        return None  # 3.13's f_executable may be another object (None for some shim frames)
    header = mem.read(code + o.code_argcount, 4), mem.read(code + o.code_firstlineno, 4)
    if header[0] is None or header[1] is None:
        return None
    checksum = code_checksum(struct.unpack("<i", header[1])[0],
                             struct.unpack("<i", header[0])[0])
    if o.code_code_adaptive == ABSENT:  # 3.8-3.10: an int
        raw = mem.read(frame + o.frame_lasti, 4)
        if raw is None:
            return None
        lasti = struct.unpack("<i", raw)[0]
        if info.version < (3, 10):
            lasti //= 2  # bytes -> code units (floor: -1 stays -1)
    else:
        ptr = mem.u64(frame + o.frame_lasti)
        if ptr is None:
            return None
        lasti = (ptr - (code + o.code_code_adaptive)) // 2
    return PyFrame(code, checksum, NO_INSTRUCTION if lasti < 0 else lasti)


def python_threads(info: PythonProcess) -> list[PyThread]:
    mem = ProcessMemory(info.pid)
    return [t for t in (walk_thread(info, ts, mem) for ts in thread_states(info, mem))
            if t is not None]
