"""Run by tests/integration/test_python_live.py under each CPython version (3.8+ syntax only).

Keeps known code objects alive, prints one JSON line describing them and the main thread's
Python stack, then blocks reading stdin (so its frames stay put) until the test closes it.
"""

import json
import sys
import threading


class Outer:
    class Inner:
        def method(self, a, b, *, c=1):
            return a + b + c


def naïve(x):  # latin-1 name: a compact 1-byte string that is not ASCII
    return x


def 名前(x, y):  # a compact 2-byte string
    return x, y


def 𠀀():  # U+20000: a compact 4-byte string
    return 0


SRC = "def in_unicode_file(q):\n    return q\n"
ns = {}
exec(compile(SRC, "/tmp/ünï/文件.py", "exec"), ns)


def describe(fn, qualname):
    code = fn.__code__
    return {"id": id(code), "qualname": qualname, "name": code.co_name,
            "filename": code.co_filename, "firstlineno": code.co_firstlineno,
            "argcount": code.co_argcount}


def report(frame):
    stack = []
    while frame is not None:
        stack.append([id(frame.f_code), frame.f_lineno])
        frame = frame.f_back
    codes = [describe(Outer.Inner.method, "Outer.Inner.method"), describe(naïve, "naïve"),
             describe(名前, "名前"), describe(𠀀, "𠀀"),
             describe(ns["in_unicode_file"], "in_unicode_file")]
    print(json.dumps({"ident": threading.get_ident(), "native_id": threading.get_native_id(),
                      "codes": codes, "stack": stack}), flush=True)


def level2(n):
    report(sys._getframe()); sys.stdin.readline()  # noqa: E702 (one line: same f_lineno)
    return n


def level1():
    return level2(3)


level1()
