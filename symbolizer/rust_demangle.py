"""Rust symbol names, demangled as rustc-demangle prints them in its alternate form (`{:#}`):
the form of libiberty's demangler (c++filt without --verbose) and of profilers (perf, samply):
no crate disambiguators (`core[8b2c…]`) and no legacy hash (`::h0123…`).

v0 (`_R…`) follows the grammar of rustc's symbol-mangling RFC 2603 and rustc-demangle's
v0.rs printer: `{closure#0}`, `<T as Trait>`, `dyn for<'a> Fn(&'a str)`, const generics,
punycode identifiers, backrefs. Legacy (`_ZN…17h<hash>E`) unescapes `$LT$`, `..` and the
rest as rustc-demangle's legacy.rs does.

Input comes from symbol tables of any binary, so it is hostile: nesting and backref chains
are bounded (a crafted backref cycle or a name that expands exponentially stops at the
limits), and any malformed name raises RustDemangleError, never anything else, and prints
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

MAX_DEPTH = 100  # nesting of paths and types (rustc-demangle: 500; Python frames are dearer)
MAX_OUTPUT = 1 << 16  # characters of one demangled name

_BASIC = {
    "a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
    "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128",
    "s": "i16", "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!",
    "p": "_",
}
_LEGACY_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(",
                   "RP": ")", "C": ","}
_B62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class RustDemangleError(ValueError):
    """Not a well-formed Rust symbol name."""


def demangle_rust(name: str) -> str:
    """The demangled name; RustDemangleError when `name` is not a Rust symbol."""
    if name.startswith("_R"):
        return _demangle_v0(name[2:])
    if name.startswith("_ZN"):
        return _demangle_legacy(name)
    raise RustDemangleError("not a Rust symbol")


# --- v0 ----------------------------------------------------------------------------------
def _demangle_v0(inner: str) -> str:
    suffix = ""
    dot = inner.find(".")
    if dot >= 0:
        inner, suffix = inner[:dot], inner[dot:]
        llvm = suffix.find(".llvm.")
        if llvm >= 0 and all(c in "0123456789abcdefABCDEF@" for c in suffix[llvm + 6:]):
            suffix = suffix[:llvm]  # LLVM's ThinLTO hash, as rustc-demangle drops it
    if not inner or not inner.isascii() or inner[0].isdigit():
        raise RustDemangleError("unsupported v0 encoding")
    p = _V0(inner)
    p.path(True)
    if p.pos < len(inner) and inner[p.pos].isupper():
        p.skipping(lambda: p.path(False))  # the instantiating crate, never printed
    if p.pos != len(inner):
        raise RustDemangleError("trailing characters")
    return "".join(p.out) + suffix


class _V0:
    def __init__(self, sym: str) -> None:
        self.sym = sym
        self.pos = 0
        self.out: list[str] = []
        self.printing = True
        self.size = 0
        self.depth = 0
        self.bound_lifetimes = 0

    # parsing
    def peek(self) -> str:
        return self.sym[self.pos] if self.pos < len(self.sym) else ""

    def eat(self, c: str) -> bool:
        if self.peek() == c:
            self.pos += 1
            return True
        return False

    def next(self) -> str:
        c = self.peek()
        if not c:
            raise RustDemangleError("unexpected end")
        self.pos += 1
        return c

    def integer_62(self) -> int:
        if self.eat("_"):
            return 0
        x = 0
        while not self.eat("_"):
            c = self.next()
            d = _B62.find(c)
            if d < 0:
                raise RustDemangleError("bad base-62 number")
            x = x * 62 + d
        return x + 1

    def opt_integer_62(self, tag: str) -> int:
        return self.integer_62() + 1 if self.eat(tag) else 0

    def disambiguator(self) -> int:
        return self.opt_integer_62("s")

    def decimal(self) -> int:
        start = self.pos
        if not self.peek().isdigit():
            raise RustDemangleError("bad decimal")
        if self.eat("0"):
            return 0  # no leading zeros: `00` is two numbers (empty closure names)
        while self.peek().isdigit():
            self.pos += 1
        if self.pos - start > 9:
            raise RustDemangleError("decimal too large")
        return int(self.sym[start:self.pos])

    def ident(self) -> str:
        puny = self.eat("u")
        n = self.decimal()
        self.eat("_")
        if self.pos + n > len(self.sym):
            raise RustDemangleError("identifier past the end")
        raw = self.sym[self.pos:self.pos + n]
        self.pos += n
        if not puny:
            return raw
        sep = raw.rfind("_")
        ascii_part, code = (raw[:sep], raw[sep + 1:]) if sep >= 0 else ("", raw)
        if not code:
            raise RustDemangleError("empty punycode")
        try:
            return _punycode(ascii_part, code)
        except (RustDemangleError, ValueError, OverflowError):
            return f"punycode{{{raw}}}"

    def hex_nibbles(self) -> str:
        start = self.pos
        while self.peek() and self.peek() in "0123456789abcdef":
            self.pos += 1
        digits = self.sym[start:self.pos]
        if not self.eat("_"):
            raise RustDemangleError("bad hex constant")
        return digits

    # printing
    def emit(self, s: str) -> None:
        if self.printing:
            self.size += len(s)
            if self.size > MAX_OUTPUT:
                raise RustDemangleError("demangled name too long")
            self.out.append(s)

    def skipping(self, f: Callable[[], object]) -> None:
        was = self.printing
        self.printing = False
        try:
            f()
        finally:
            self.printing = was

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RustDemangleError("nested too deeply")

    def backref(self, f: Callable[[], _T]) -> _T:
        start = self.pos - 1  # at the 'B'
        target = self.integer_62()
        if target >= start:
            raise RustDemangleError("backref forward")
        saved = self.pos
        self.pos = target
        self.enter()
        try:
            return f()
        finally:
            self.depth -= 1
            self.pos = saved

    def sep_list(self, f: Callable[[], object], sep: str) -> int:
        n = 0
        while not self.eat("E"):
            if n:
                self.emit(sep)
            f()
            n += 1
        return n

    def lifetime(self, lt: int) -> None:
        self.emit("'")
        if lt == 0:
            self.emit("_")
            return
        depth = self.bound_lifetimes - lt
        if depth < 0:
            raise RustDemangleError("lifetime out of range")
        self.emit(chr(ord("a") + depth) if depth < 26 else f"_{depth}")

    def in_binder(self, f: Callable[[], object]) -> None:
        bound = self.opt_integer_62("G")
        if not self.printing:
            f()
            return
        if bound:
            self.emit("for<")
            for i in range(bound):
                if i:
                    self.emit(", ")
                self.bound_lifetimes += 1
                self.lifetime(1)
            self.emit("> ")
        try:
            f()
        finally:
            self.bound_lifetimes -= bound

    def path(self, in_value: bool) -> None:
        self.enter()
        tag = self.next()
        if tag == "C":
            self.disambiguator()
            self.emit(self.ident())
        elif tag == "N":
            ns = self.next()
            self.path(in_value)
            dis = self.disambiguator()
            name = self.ident()
            if ns.isupper():
                kind = {"C": "closure", "S": "shim"}.get(ns, ns)
                self.emit(f"::{{{kind}{':' + name if name else ''}#{dis}}}")
            elif ns.islower():
                if name:
                    self.emit("::" + name)
            else:
                raise RustDemangleError("bad namespace")
        elif tag in "MXY":
            if tag != "Y":
                self.disambiguator()
                self.skipping(lambda: self.path(False))  # the impl's own path
            self.emit("<")
            self.type_()
            if tag != "M":
                self.emit(" as ")
                self.path(False)
            self.emit(">")
        elif tag == "I":
            self.path(in_value)
            if in_value:
                self.emit("::")
            self.emit("<")
            self.sep_list(self.generic_arg, ", ")
            self.emit(">")
        elif tag == "B":
            self.backref(lambda: self.path(in_value))
        else:
            raise RustDemangleError("bad path")
        self.depth -= 1

    def generic_arg(self) -> None:
        if self.eat("L"):
            self.lifetime(self.integer_62())
        elif self.eat("K"):
            self.const(False)
        else:
            self.type_()

    def type_(self) -> None:
        tag = self.next()
        basic = _BASIC.get(tag)
        if basic is not None:
            self.emit(basic)
            return
        self.enter()
        if tag in "RQ":
            self.emit("&")
            if self.eat("L"):
                lt = self.integer_62()
                if lt:
                    self.lifetime(lt)
                    self.emit(" ")
            if tag == "Q":
                self.emit("mut ")
            self.type_()
        elif tag in "PO":
            self.emit("*const " if tag == "P" else "*mut ")
            self.type_()
        elif tag in "AS":
            self.emit("[")
            self.type_()
            if tag == "A":
                self.emit("; ")
                self.const(True)
            self.emit("]")
        elif tag == "T":
            self.emit("(")
            if self.sep_list(self.type_, ", ") == 1:
                self.emit(",")
            self.emit(")")
        elif tag == "F":
            self.in_binder(self.fn_sig)
        elif tag == "D":
            self.emit("dyn ")
            self.in_binder(lambda: self.sep_list(self.dyn_trait, " + "))
            if not self.eat("L"):
                raise RustDemangleError("dyn without lifetime")
            lt = self.integer_62()
            if lt:
                self.emit(" + ")
                self.lifetime(lt)
        elif tag == "B":
            self.backref(self.type_)
        else:
            self.pos -= 1
            self.path(False)
        self.depth -= 1

    def fn_sig(self) -> None:
        unsafe = self.eat("U")
        abi = None
        if self.eat("K"):
            if self.eat("C"):
                abi = "C"
            else:
                abi = self.ident()
                if not abi or not abi.isascii():
                    raise RustDemangleError("bad ABI")
        if unsafe:
            self.emit("unsafe ")
        if abi is not None:
            self.emit('extern "' + abi.replace("_", "-") + '" ')
        self.emit("fn(")
        self.sep_list(self.type_, ", ")
        self.emit(")")
        if not self.eat("u"):
            self.emit(" -> ")
            self.type_()

    def dyn_trait(self) -> None:
        open_ = self.path_maybe_open_generics()
        while self.eat("p"):
            self.emit(", " if open_ else "<")
            open_ = True
            self.emit(self.ident() + " = ")
            self.type_()
        if open_:
            self.emit(">")

    def path_maybe_open_generics(self) -> bool:
        if self.eat("B"):
            return bool(self.backref(self.path_maybe_open_generics))
        if self.eat("I"):
            self.path(False)
            self.emit("<")
            self.sep_list(self.generic_arg, ", ")
            return True
        self.path(False)
        return False

    def const(self, in_value: bool) -> None:
        tag = self.next()
        self.enter()
        if tag == "p":
            self.emit("_")
        elif tag in "htmyoj":
            self.const_uint()
        elif tag in "aslxni":
            if self.eat("n"):
                self.emit("-")
            self.const_uint()
        elif tag == "b":
            v = _uint(self.hex_nibbles())
            if v not in (0, 1):
                raise RustDemangleError("bad bool")
            self.emit("true" if v else "false")
        elif tag == "c":
            v = _uint(self.hex_nibbles())
            if v is None or v > 0x10FFFF or 0xD800 <= v < 0xE000:
                raise RustDemangleError("bad char")
            self.emit(_quoted(chr(v), "'"))
        elif tag == "e":
            self.emit("*")
            self.const_str()
        elif tag in "RQ":
            if tag == "R" and self.eat("e"):
                self.const_str()
            else:
                self.emit("&" if tag == "R" else "&mut ")
                self.const(True)
        elif tag == "A":
            self.emit("[")
            self.sep_list(lambda: self.const(True), ", ")
            self.emit("]")
        elif tag == "T":
            self.emit("(")
            if self.sep_list(lambda: self.const(True), ", ") == 1:
                self.emit(",")
            self.emit(")")
        elif tag == "V":
            self.path(True)
            kind = self.next()
            if kind == "T":
                self.emit("(")
                self.sep_list(lambda: self.const(True), ", ")
                self.emit(")")
            elif kind == "S":
                self.emit(" { ")
                self.sep_list(self.const_field, ", ")
                self.emit(" }")
            elif kind != "U":
                raise RustDemangleError("bad const variant")
        elif tag == "B":
            self.backref(lambda: self.const(in_value))
        else:
            raise RustDemangleError("bad const")
        self.depth -= 1

    def const_field(self) -> None:
        self.disambiguator()
        self.emit(self.ident() + ": ")
        self.const(True)

    def const_uint(self) -> None:
        digits = self.hex_nibbles()
        v = _uint(digits)
        self.emit(str(v) if v is not None else "0x" + digits)

    def const_str(self) -> None:
        digits = self.hex_nibbles()
        if len(digits) % 2:
            raise RustDemangleError("odd string constant")
        try:
            text = bytes.fromhex(digits).decode("utf-8")
        except ValueError:
            raise RustDemangleError("string constant not UTF-8") from None
        self.emit(_quoted(text, '"'))


def _uint(digits: str) -> int | None:
    digits = digits.lstrip("0")
    return int(digits, 16) if len(digits) <= 16 and digits else (0 if not digits else None)


def _quoted(text: str, quote: str) -> str:
    """Rust's char::escape_debug inside quotes, as rustc-demangle prints constants."""
    out = [quote]
    for ch in text:
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif ch in "\n\r\t\0":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}[ch])
        elif not ch.isprintable():
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append(quote)
    return "".join(out)


def _punycode(ascii_part: str, code: str) -> str:
    """RFC 3492 decoding (base 36, tmin 1, tmax 26, skew 38, damp 700), with Rust's `_` for
    the delimiter (RFC 2603)."""
    out = list(ascii_part)
    n, i, bias, pos, first = 0x80, 0, 72, 0, True
    while pos < len(code):
        old_i, w, k = i, 1, 36
        while True:
            if pos >= len(code):
                raise RustDemangleError("truncated punycode")
            c = code[pos]
            pos += 1
            if "a" <= c <= "z":
                d = ord(c) - ord("a")
            elif "0" <= c <= "9":
                d = ord(c) - ord("0") + 26
            else:
                raise RustDemangleError("bad punycode digit")
            i += d * w
            t = max(1, min(26, k - bias))
            if d < t:
                break
            w *= 36 - t
            k += 36
            if w > 1 << 32:
                raise RustDemangleError("punycode overflow")
        points = len(out) + 1
        bias = _adapt(i - old_i, points, first)
        first = False
        n += i // points
        i %= points
        if n > 0x10FFFF or 0xD800 <= n < 0xE000 or points > 256:
            raise RustDemangleError("punycode out of range")
        out.insert(i, chr(n))
        i += 1
    return "".join(out)


def _adapt(delta: int, points: int, first: bool) -> int:
    delta = delta // 700 if first else delta // 2
    delta += delta // points
    k = 0
    while delta > (35 * 26) // 2:
        delta //= 35
        k += 36
    return k + (36 * delta) // (delta + 38)


# --- legacy ------------------------------------------------------------------------------
def _demangle_legacy(name: str) -> str:
    inner = name[3:]
    dot = inner.find(".llvm.")
    if dot >= 0:
        inner = inner[:dot]
    elements: list[str] = []
    pos = 0
    while pos < len(inner) and inner[pos] != "E":
        start = pos
        while pos < len(inner) and inner[pos].isdigit():
            pos += 1
        if start == pos:
            raise RustDemangleError("bad legacy element")
        n = int(inner[start:pos])
        if pos + n > len(inner):
            raise RustDemangleError("legacy element past the end")
        elements.append(inner[pos:pos + n])
        pos += n
    if pos >= len(inner) or not elements:
        raise RustDemangleError("legacy name without E")
    last = elements[-1]
    if len(last) == 17 and last[0] == "h" and all(c in "0123456789abcdef" for c in last[1:]):
        elements.pop()  # the hash, dropped as rustc-demangle's alternate form does
    return "::".join(_unescape(e) for e in elements) + inner[pos + 1:]


def _unescape(element: str) -> str:
    rest = element[1:] if element.startswith("_$") else element
    out = []
    while rest:
        if rest.startswith("."):
            if rest.startswith(".."):
                out.append("::")
                rest = rest[2:]
            else:
                out.append(".")
                rest = rest[1:]
        elif rest.startswith("$"):
            end = rest.find("$", 1)
            if end < 0:
                break
            esc = rest[1:end]
            if esc in _LEGACY_ESCAPES:
                out.append(_LEGACY_ESCAPES[esc])
            elif esc.startswith("u") and esc[1:] and all(c in "0123456789abcdef" for c in esc[1:]):
                cp = int(esc[1:], 16)
                if cp > 0x10FFFF or 0xD800 <= cp < 0xE000 or not chr(cp).isprintable():
                    break
                out.append(chr(cp))
            else:
                break
            rest = rest[end + 1:]
        else:
            cut = min((i for i in (rest.find("$"), rest.find(".")) if i >= 0), default=len(rest))
            out.append(rest[:cut])
            rest = rest[cut:]
    out.append(rest)
    return "".join(out)
