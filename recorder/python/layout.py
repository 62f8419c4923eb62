"""Byte offsets into CPython's internal structures, one instance per minor version.

The values are generated, never typed in: recorder/python/gen_offsets.py compiles a small C
program with `offsetof(...)` against each version's own headers (with Py_BUILD_CORE, so the
internal structures are visible) and writes recorder/python/offsets.py. Tests regenerate the
table and compare, and check it against the DWARF debug info of the interpreters on this
machine and against live processes.

A field a version does not have is -1. Names are what the BPF walker uses
(docs/python-contract: the lead's bpf/profile.c); all values are in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

ABSENT = -1


@dataclass(frozen=True)
class PyOffsets:
    version: tuple[int, int]
    headers: str  # PY_VERSION of the headers the values were generated from, e.g. "3.11.7"
    # --- finding the thread states ---------------------------------------------------
    runtime_interpreters_head: int  # _PyRuntime.interpreters.head
    runtime_tss_key: int  # _PyRuntime.(gilstate.)autoTSSkey._key: the pthread key of tstates
    interp_next: int  # PyInterpreterState.next
    interp_threads_head: int  # PyInterpreterState.tstate_head (3.8-3.10) / .threads.head
    tstate_next: int  # PyThreadState.next
    tstate_interp: int  # PyThreadState.interp
    tstate_thread_id: int  # PyThreadState.thread_id: pthread_self() (glibc: the TCB address)
    tstate_native_thread_id: int  # PyThreadState.native_thread_id (the TID; 3.11+)
    tstate_frame: int  # .frame (3.8-3.10), .cframe (3.11-3.12), .current_frame (3.13)
    cframe_current_frame: int  # _PyCFrame.current_frame (3.11-3.12)
    # --- frames ------------------------------------------------------------------------
    frame_back: int  # PyFrameObject.f_back (3.8-3.10) / _PyInterpreterFrame.previous
    frame_code: int  # .f_code (3.8-3.12) / _PyInterpreterFrame.f_executable (3.13)
    frame_lasti: int  # .f_lasti int (3.8-3.10), .prev_instr (3.11-3.12), .instr_ptr (3.13)
    frame_is_entry: int  # _PyInterpreterFrame.is_entry (bool, 3.11)
    frame_owner: int  # _PyInterpreterFrame.owner (char, 3.11+)
    frame_owned_by_cstack: int  # value of FRAME_OWNED_BY_CSTACK (3.12+): a C entry shim frame
    # --- code objects ------------------------------------------------------------------
    code_argcount: int  # PyCodeObject.co_argcount (int)
    code_firstlineno: int  # PyCodeObject.co_firstlineno (int)
    code_filename: int  # PyCodeObject.co_filename (str *)
    code_name: int  # PyCodeObject.co_name (str *)
    code_qualname: int  # PyCodeObject.co_qualname (str *, 3.11+)
    code_linetable: int  # PyCodeObject.co_lnotab (3.8-3.9) / .co_linetable (bytes *)
    code_code_adaptive: int  # PyCodeObject.co_code_adaptive: the bytecode, inline (3.11+)
    # --- objects -----------------------------------------------------------------------
    object_type: int  # PyObject.ob_type
    varobject_size: int  # PyVarObject.ob_size
    bytes_data: int  # PyBytesObject.ob_sval
    unicode_length: int  # PyASCIIObject.length (code points)
    unicode_state: int  # PyASCIIObject.state (a 32-bit bit field)
    unicode_kind_shift: int  # bit of state.kind (3 bits: 1, 2 or 4 bytes per code point)
    unicode_compact_bit: int  # bit of state.compact
    unicode_ascii_bit: int  # bit of state.ascii
    unicode_ascii_data: int  # sizeof(PyASCIIObject): where compact ASCII data starts
    unicode_compact_data: int  # sizeof(PyCompactUnicodeObject): other compact strings' data

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


OFFSET_FIELDS = [f.name for f in fields(PyOffsets) if f.name not in ("version", "headers")]
