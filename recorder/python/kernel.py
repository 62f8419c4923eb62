"""CPython processes as the BPF frame walker (bpf/python.h) sees them: one `pyprocs` entry each.

The entry's offsets come from the generated per-version table (offsets.py) in the order of the
PY_* indexes of bpf/python.h; the task_struct offset of the fs base (3.8-3.10 find their
thread state by pthread_self()) from the running kernel's BTF (recorder/btf.py).
"""

from __future__ import annotations

import struct

from recorder.btf import task_fsbase_offset
from recorder.python.process import PythonProcess

N_OFFSETS = 16
# struct py_proc_t: runtime, eval_start, eval_end, code_type, minor, pad, s32 off[16],
# eager_until
PY_PROC = struct.Struct(f"<QQQQII{N_OFFSETS}iQ")


def pyproc_entry(info: PythonProcess, fsbase_offset: int | None = None,
                 eager_until_ns: int = 0) -> bytes:
    """The packed `pyprocs` value for a process. Until `eager_until_ns` (CLOCK_MONOTONIC, as
    bpf_ktime_get_ns), the BPF program sends each code object it meets first at once."""
    o = info.offsets
    minor = info.version[1]
    # 3.11 ends an activation's frames at is_entry, 3.12+ at a shim whose owner is the C stack
    frame_entry = o.frame_owner if minor >= 12 else o.frame_is_entry
    fsbase = -1
    if minor < 11:  # 3.11+ find the thread by native_thread_id
        fsbase = fsbase_offset if fsbase_offset is not None else (task_fsbase_offset() or -1)
    off = [
        o.runtime_interpreters_head,        # PY_RUNTIME_INTERP_HEAD
        o.interp_threads_head,              # PY_INTERP_THREADS_HEAD
        o.tstate_next,                      # PY_TSTATE_NEXT
        o.tstate_native_thread_id,          # PY_TSTATE_TID (3.11+)
        o.tstate_frame,                     # PY_TSTATE_FRAME
        o.cframe_current_frame if 11 <= minor <= 12 else -1,  # PY_CFRAME_CURRENT
        o.frame_back,                       # PY_FRAME_BACK
        o.frame_code,                       # PY_FRAME_CODE
        o.frame_lasti,                      # PY_FRAME_LASTI
        frame_entry,                        # PY_FRAME_ENTRY
        o.code_firstlineno,                 # PY_CODE_FIRSTLINENO
        o.code_argcount,                    # PY_CODE_ARGCOUNT
        o.code_code_adaptive,               # PY_CODE_ADAPTIVE
        o.tstate_thread_id,                 # PY_TSTATE_THREAD_ID
        fsbase,                             # PY_TASK_FSBASE (3.8-3.10)
        o.object_type,                      # PY_OBJECT_TYPE
    ]
    return PY_PROC.pack(info.runtime_addr, info.eval_start, info.eval_end, info.code_type or 0,
                        minor, 0, *off, eager_until_ns)
