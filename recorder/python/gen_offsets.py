"""Generate recorder/python/offsets.py from the CPython headers of each supported version.

    .venv/bin/python -m recorder.python.gen_offsets            # print the module
    .venv/bin/python -m recorder.python.gen_offsets --write    # rewrite offsets.py

For each version a C program is compiled against that version's own headers, with
Py_BUILD_CORE so that the internal structures (pycore_*.h) are visible, and run: it prints
`offsetof(...)` of every field the walker and the code-object reader use. Bit positions in the
unicode `state` bit field have no offsetof; the program sets each field in a zeroed object and
reports which bit changed. The headers come from pyenv's builds (one per minor version);
tests/integration/test_python_offsets.py regenerates the table and compares, so it cannot drift, and
also compiles against Debian's /usr/include/python3.11 (its 3.11.2 must give 3.11.7's layout).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from recorder.python.layout import ABSENT, OFFSET_FIELDS, PyOffsets

PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
# One build per minor version: the one the table is generated from.
SOURCES = {
    (3, 8): "3.8.18", (3, 9): "3.9.18", (3, 10): "3.10.13",
    (3, 11): "3.11.7", (3, 12): "3.12.1", (3, 13): "3.13.0",
}
OUT = Path(__file__).with_name("offsets.py")

# field -> [(first PY_VERSION_HEX, C expression)], the last entry whose version is <= the
# headers' wins; a field without a matching entry is ABSENT.
_V38, _V39, _V310, _V311, _V312, _V313 = (0x03080000, 0x03090000, 0x030A0000, 0x030B0000,
                                          0x030C0000, 0x030D0000)
_TSS_KEY = "offsetof(Py_tss_t, _key)"
EXPRESSIONS: dict[str, list[tuple[int, str]]] = {
    "runtime_interpreters_head": [(_V38, "offsetof(_PyRuntimeState, interpreters.head)")],
    "runtime_tss_key": [(_V38, f"offsetof(_PyRuntimeState, gilstate.autoTSSkey) + {_TSS_KEY}"),
                        (_V312, f"offsetof(_PyRuntimeState, autoTSSkey) + {_TSS_KEY}")],
    "interp_next": [(_V38, "offsetof(PyInterpreterState, next)")],
    "interp_threads_head": [(_V38, "offsetof(PyInterpreterState, tstate_head)"),
                            (_V311, "offsetof(PyInterpreterState, threads.head)")],
    "tstate_next": [(_V38, "offsetof(PyThreadState, next)")],
    "tstate_interp": [(_V38, "offsetof(PyThreadState, interp)")],
    "tstate_thread_id": [(_V38, "offsetof(PyThreadState, thread_id)")],
    "tstate_native_thread_id": [(_V311, "offsetof(PyThreadState, native_thread_id)")],
    "tstate_frame": [(_V38, "offsetof(PyThreadState, frame)"),
                     (_V311, "offsetof(PyThreadState, cframe)"),
                     (_V313, "offsetof(PyThreadState, current_frame)")],
    "cframe_current_frame": [(_V311, "offsetof(_PyCFrame, current_frame)"),
                             (_V313, "-1")],
    "frame_back": [(_V38, "offsetof(PyFrameObject, f_back)"),
                   (_V311, "offsetof(struct _PyInterpreterFrame, previous)")],
    "frame_code": [(_V38, "offsetof(PyFrameObject, f_code)"),
                   (_V311, "offsetof(struct _PyInterpreterFrame, f_code)"),
                   (_V313, "offsetof(struct _PyInterpreterFrame, f_executable)")],
    "frame_lasti": [(_V38, "offsetof(PyFrameObject, f_lasti)"),
                    (_V311, "offsetof(struct _PyInterpreterFrame, prev_instr)"),
                    (_V313, "offsetof(struct _PyInterpreterFrame, instr_ptr)")],
    "frame_is_entry": [(_V311, "offsetof(struct _PyInterpreterFrame, is_entry)"),
                       (_V312, "-1")],
    "frame_owner": [(_V311, "offsetof(struct _PyInterpreterFrame, owner)")],
    "frame_owned_by_cstack": [(_V312, "FRAME_OWNED_BY_CSTACK")],
    "code_argcount": [(_V38, "offsetof(PyCodeObject, co_argcount)")],
    "code_firstlineno": [(_V38, "offsetof(PyCodeObject, co_firstlineno)")],
    "code_filename": [(_V38, "offsetof(PyCodeObject, co_filename)")],
    "code_name": [(_V38, "offsetof(PyCodeObject, co_name)")],
    "code_qualname": [(_V311, "offsetof(PyCodeObject, co_qualname)")],
    "code_linetable": [(_V38, "offsetof(PyCodeObject, co_lnotab)"),
                       (_V310, "offsetof(PyCodeObject, co_linetable)")],
    "code_code_adaptive": [(_V311, "offsetof(PyCodeObject, co_code_adaptive)")],
    "object_type": [(_V38, "offsetof(PyObject, ob_type)")],
    "varobject_size": [(_V38, "offsetof(PyVarObject, ob_size)")],
    "bytes_data": [(_V38, "offsetof(PyBytesObject, ob_sval)")],
    "unicode_length": [(_V38, "offsetof(PyASCIIObject, length)")],
    "unicode_state": [(_V38, "offsetof(PyASCIIObject, state)")],
    "unicode_kind_shift": [(_V38, "STATE_BIT(kind)")],
    "unicode_compact_bit": [(_V38, "STATE_BIT(compact)")],
    "unicode_ascii_bit": [(_V38, "STATE_BIT(ascii)")],
    "unicode_ascii_data": [(_V38, "sizeof(PyASCIIObject)")],
    "unicode_compact_data": [(_V38, "sizeof(PyCompactUnicodeObject)")],
}

_PROLOGUE = r"""
#define Py_BUILD_CORE 1
#include <Python.h>
#include <frameobject.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if PY_VERSION_HEX >= 0x03090000
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#else
#include "internal/pycore_pystate.h"
#endif
#if PY_VERSION_HEX >= 0x030b0000
#include "internal/pycore_frame.h"
#endif

/* The lowest bit a bit field of PyASCIIObject.state occupies: set it to 1 in a zeroed
   object and look for the bit (the state word is read as one uint32, as the reader does). */
static long state_bit(PyASCIIObject *o) {
    uint32_t word;
    memcpy(&word, (char *)o + offsetof(PyASCIIObject, state), sizeof word);
    for (long i = 0; i < 32; i++)
        if (word & (1u << i)) return i;
    return -1;
}
#define STATE_BIT(f) ({ PyASCIIObject o_; memset(&o_, 0, sizeof o_); o_.state.f = 1; \
                        state_bit(&o_); })

int main(void) {
    printf("headers %s\n", PY_VERSION);
"""


def expression_for(name: str, version: tuple[int, int]) -> str | None:
    """The C expression of field `name` for `version` (None: the version has no such field);
    tests evaluate the same expressions against DWARF debug info."""
    hexversion = version[0] << 24 | version[1] << 16
    chosen = None
    for first, expr in sorted(EXPRESSIONS[name]):
        if first <= hexversion:
            chosen = expr
    return None if chosen in (None, "-1") else chosen


def c_program() -> str:
    lines = [_PROLOGUE]
    for name in OFFSET_FIELDS:
        entries = sorted(EXPRESSIONS[name])
        lines.append("#if 0")
        for first, expr in reversed(entries):
            lines.append(f"#elif PY_VERSION_HEX >= {first:#010x}")
            lines.append(f'    printf("{name} %ld\\n", (long)({expr}));')
        lines.append("#else")
        lines.append(f'    printf("{name} %ld\\n", (long){ABSENT});')
        lines.append("#endif")
    lines.append("    return 0;\n}\n")
    return "\n".join(lines)


def include_dir(version: tuple[int, int], build: str) -> Path:
    return PYENV / build / "include" / f"python{version[0]}.{version[1]}"


def generate_one(version: tuple[int, int], include: Path, cc: str = "cc") -> PyOffsets:
    """The offsets of the headers in `include` (a python3.X include directory)."""
    if not (include / "Python.h").is_file():
        raise FileNotFoundError(f"no Python.h in {include}")
    with tempfile.TemporaryDirectory(prefix="pyoffsets-") as tmp:
        src, exe = Path(tmp, "offsets.c"), Path(tmp, "offsets")
        src.write_text(c_program())
        subprocess.run([cc, "-std=gnu11", "-w", f"-I{include}", "-o", str(exe), str(src)],
                       check=True, capture_output=True, text=True)
        out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    values: dict[str, str] = dict(line.split(" ", 1) for line in out.splitlines())
    headers = values.pop("headers")
    if not headers.startswith(f"{version[0]}.{version[1]}."):
        raise ValueError(f"{include} holds the headers of Python {headers}, not "
                         f"{version[0]}.{version[1]}")
    return PyOffsets(version=version, headers=headers,
                     **{name: int(values[name]) for name in OFFSET_FIELDS})


def generate_all() -> dict[tuple[int, int], PyOffsets]:
    return {v: generate_one(v, include_dir(v, build)) for v, build in SOURCES.items()}


def render(table: dict[tuple[int, int], PyOffsets]) -> str:
    out = ['"""GENERATED by recorder/python/gen_offsets.py from each version\'s headers: do not '
           'edit.',
           "",
           "Regenerate with `.venv/bin/python -m recorder.python.gen_offsets --write`;",
           "tests/integration/test_python_offsets.py fails if this file and the headers disagree.",
           '"""',
           "",
           "from recorder.python.layout import PyOffsets",
           "",
           "OFFSETS: dict[tuple[int, int], PyOffsets] = {"]
    for version, o in sorted(table.items()):
        out.append(f"    {version!r}: PyOffsets(")
        out.append(f"        version={version!r}, headers={o.headers!r},")
        for name in OFFSET_FIELDS:
            out.append(f"        {name}={getattr(o, name)},")
        out.append("    ),")
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {OUT.name}")
    args = parser.parse_args(argv)
    try:
        text = render(generate_all())
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"gen_offsets: error: {exc} {detail}".strip(), file=sys.stderr)
        return 1
    if args.write:
        OUT.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

