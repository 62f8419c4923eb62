"""Run by tests/integration/test_python_lines.py under each CPython version (3.8+ syntax only).

Prints one JSON document: for every code object of some stdlib modules (nested code too),
its first line, line table and, for every instruction, the line the interpreter's own
PyCode_Addr2Line gives (what frame.f_lineno is computed with); and (f_lasti, f_lineno) pairs
of frames of a busy thread, taken by another thread with sys._current_frames().
"""

import ctypes
import json
import sys
import threading
import time
import types

addr2line = ctypes.pythonapi.PyCode_Addr2Line
addr2line.argtypes = [ctypes.py_object, ctypes.c_int]
addr2line.restype = ctypes.c_int


def table(code):
    return code.co_linetable if sys.version_info >= (3, 10) else code.co_lnotab


def codes_of(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from codes_of(const)


def module_codes(name):
    module = __import__(name, fromlist=["_"])
    with open(module.__file__, encoding="utf-8") as f:
        return list(codes_of(compile(f.read(), module.__file__, "exec")))


def busy(stop):
    total = 0
    while not stop.is_set():
        for i in range(200):
            total += i * i if i % 3 else -i
        json.dumps({"a": [total, str(total)]})
        sorted(str(total))


def samples(n):
    stop = threading.Event()
    t = threading.Thread(target=busy, args=(stop,))
    t.start()
    out = []
    while len(out) < n:
        time.sleep(0.0005)  # let the busy thread run on to another point
        frame = sys._current_frames().get(t.ident)
        while frame is not None:
            if frame.f_lasti >= 0:
                out.append([id(frame.f_code), table(frame.f_code).hex(),
                            frame.f_code.co_firstlineno, frame.f_lasti, frame.f_lineno])
            frame = frame.f_back
    stop.set()
    t.join()
    return out


codes = []
for name in ("json.decoder", "argparse", "asyncio.base_events", "dataclasses", "typing"):
    for code in module_codes(name):
        units = len(code.co_code) // 2
        codes.append([code.co_firstlineno, table(code).hex(),
                      [addr2line(code, 2 * i) for i in range(units)]])
print(json.dumps({"codes": codes, "samples": samples(1000)}))
