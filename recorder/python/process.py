"""Is a process CPython, which version, and where its interpreter state lies.

A CPython process maps its interpreter either as the executable itself (Debian's
/usr/bin/python3.11 is linked statically with libpython) or as libpython3.X.so (pyenv's and
most `--enable-shared` builds: the executable is a stub). The version comes from that file's
name, and from the `Py_Version` symbol where it exists (3.11+: PY_VERSION_HEX as data). The
addresses the BPF walker needs are symbols of that object plus its load bias:
- `_PyRuntime`: the runtime state, root of the interpreter and thread-state lists;
- `_PyEval_EvalFrameDefault` (st_value, st_size): the native function that runs Python frames,
  so that BPF knows where to put a Python frame among native ones.
Symbols are read from .dynsym, then .symtab, of the very file mapped (/proc/PID/map_files, as
recorder/objects.py does), each object once (cached by device, inode, size and mtime).
"""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from recorder.objects import _open_candidates
from recorder.procfs import Mapping
from recorder.python.code import TypeAddrs
from recorder.python.layout import PyOffsets
from recorder.python.offsets import OFFSETS
from recording.elf import ElfError, LoadSegment, read_elf_info, vaddr_of_offset

SUPPORTED = sorted(OFFSETS)
_SUPPORTED_TEXT = f"{SUPPORTED[0][0]}.{SUPPORTED[0][1]}-{SUPPORTED[-1][0]}.{SUPPORTED[-1][1]}"
# libpython3.11.so.1.0, libpython3.7m.so, libpython2.7.so; python3.11, python3.7m, python2.7
_LIB_RE = re.compile(r"^libpython(\d)\.(\d+)[dmu]*\.so(\.[\d.]+)?$")
_EXE_RE = re.compile(r"^python(\d)\.(\d+)[dmu]*$")
_WANTED = ("_PyRuntime", "_PyEval_EvalFrameDefault", "Py_Version", "PyCode_Type",
           "PyUnicode_Type", "PyBytes_Type")


@dataclass(frozen=True)
class PythonProcess:
    pid: int
    version: tuple[int, int]
    version_hex: int | None  # Py_Version (3.11+), e.g. 0x030B07F0 for 3.11.7
    object_path: str  # the binary or libpython that holds the interpreter
    bias: int  # load bias of that object (absolute address - ELF address)
    runtime_addr: int  # absolute address of _PyRuntime
    eval_start: int  # absolute range of _PyEval_EvalFrameDefault
    eval_end: int
    code_type: int | None  # absolute address of PyCode_Type (to check a code object's type)
    unicode_type: int | None
    bytes_type: int | None
    offsets: PyOffsets

    @property
    def types(self) -> TypeAddrs:
        return TypeAddrs(self.code_type, self.unicode_type, self.bytes_type)


@dataclass(frozen=True)
class Unsupported:
    pid: int
    reason: str  # one line, for the recorder's log: why this process has no Python frames


@dataclass(frozen=True)
class _ObjectSymbols:
    symbols: dict[str, tuple[int, int]]  # name -> (st_value, st_size)
    loads: tuple[LoadSegment, ...]
    version_hex: int | None


def interpreter_mapping(mappings: list[Mapping]) -> tuple[Mapping, tuple[int, int]] | None:
    """The mapping of libpython (preferred) or of a python3.X executable, and the version its
    name says; None when no mapping looks like CPython."""
    exe = None
    for m in mappings:
        name = os.path.basename(m.path.removesuffix(" (deleted)"))
        lib = _LIB_RE.match(name)
        if lib:
            return m, (int(lib.group(1)), int(lib.group(2)))
        found = _EXE_RE.match(name)
        if found and exe is None:
            exe = (m, (int(found.group(1)), int(found.group(2))))
    return exe


def python_info(pid: int, mappings: list[Mapping], proc: str = "/proc"
                ) -> PythonProcess | Unsupported | None:
    """What the BPF walker needs for one process; None when it is not a CPython process.

    `mappings` are the process's executable mappings (recorder/procfs.py). Never raises: a
    process that exits meanwhile, an unreadable or stripped object give Unsupported."""
    found = interpreter_mapping(mappings)
    if found is None:
        return None
    m, version = found
    name = os.path.basename(m.path)
    if version not in OFFSETS:
        return Unsupported(pid, f"{name}: CPython {version[0]}.{version[1]} is not supported "
                                f"(Python frames need {_SUPPORTED_TEXT}); native frames only")
    syms, problem = _read_object(pid, m, proc)
    if syms is None:
        return Unsupported(pid, f"{name}: {problem}; native frames only")
    if syms.version_hex is not None and (syms.version_hex >> 24, syms.version_hex >> 16 & 0xFF
                                         ) != version:
        return Unsupported(pid, f"{name}: Py_Version says {syms.version_hex >> 24}."
                                f"{syms.version_hex >> 16 & 0xFF}, the file name "
                                f"{version[0]}.{version[1]}; native frames only")
    missing = [s for s in ("_PyRuntime", "_PyEval_EvalFrameDefault") if s not in syms.symbols]
    if missing:
        return Unsupported(pid, f"{name}: no {' or '.join(missing)} symbol (a stripped static "
                                "build); native frames only")
    elf_addr = vaddr_of_offset(syms.loads, m.file_offset)
    if elf_addr is None:
        return Unsupported(pid, f"{name}: mapping offset {m.file_offset:#x} is in no PT_LOAD "
                                "segment; native frames only")
    bias = m.start - elf_addr

    def absolute(sym: str) -> int | None:
        got = syms.symbols.get(sym)
        return None if got is None else got[0] + bias

    eval_value, eval_size = syms.symbols["_PyEval_EvalFrameDefault"]
    return PythonProcess(
        pid=pid, version=version, version_hex=syms.version_hex, object_path=m.path, bias=bias,
        runtime_addr=syms.symbols["_PyRuntime"][0] + bias,
        eval_start=eval_value + bias, eval_end=eval_value + bias + eval_size,
        code_type=absolute("PyCode_Type"), unicode_type=absolute("PyUnicode_Type"),
        bytes_type=absolute("PyBytes_Type"), offsets=OFFSETS[version])


def _read_object(pid: int, m: Mapping, proc: str) -> tuple[_ObjectSymbols | None, str]:
    # Known by the mapping's device, inode and path (recorder/objects.py identifies objects
    # by the same key): a busy host's new Python processes, each snapshotted 2-3 times (fork,
    # exec, extension imports), then open nothing. Opening map_files took ~0.5 ms a snapshot
    # here, a quarter of the recorder's main thread at 10 new Python processes a second.
    mapped = (m.dev, m.inode, m.path)
    known = _BY_MAPPING.get(mapped)
    if known is not None and m.inode:
        return known, ""
    problems = []
    for open_candidate in _open_candidates(pid, m, proc):
        try:
            with open(open_candidate(), "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    problems.append("not a regular file")
                    continue
                got = _symbols_of(f, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
                if len(_BY_MAPPING) >= _STORE_MAX:
                    _BY_MAPPING.pop(next(iter(_BY_MAPPING)))
                _BY_MAPPING[mapped] = got
                return got, ""
        except (ElfError, ELFError, struct.error) as exc:
            return None, f"not a readable ELF file ({exc})"
        except (OSError, ValueError) as exc:
            problems.append(getattr(exc, "strerror", None) or str(exc))
    return None, "unreadable: " + "; ".join(dict.fromkeys(problems))


_STORE: dict[tuple[int, int, int, int], _ObjectSymbols] = {}
_STORE_MAX = 64  # distinct interpreter binaries on one host: a handful
_BY_MAPPING: dict[tuple[str, int, str], _ObjectSymbols] = {}


def _symbols_of(f: BinaryIO, key: tuple[int, int, int, int]) -> _ObjectSymbols:
    """Symbols of an open object, parsed once per (device, inode, size, mtime): every Python
    process of one installation maps the same libpython."""
    got = _STORE.get(key)
    if got is None:
        if len(_STORE) >= _STORE_MAX:
            _STORE.pop(next(iter(_STORE)))
        got = _STORE[key] = _parse_symbols(f)
    return got


def _parse_symbols(f: BinaryIO) -> _ObjectSymbols:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    loads = read_elf_info(f, size, want_sections=False).loads
    elf = ELFFile(f)
    symbols: dict[str, tuple[int, int]] = {}
    for section_name in (".dynsym", ".symtab"):
        section = elf.get_section_by_name(section_name)
        if not isinstance(section, SymbolTableSection):
            continue
        symbols.update((k, v) for k, v in _wanted_symbols(section).items() if k not in symbols)
        if all(s in symbols for s in _WANTED):
            break
    version_hex = None
    if "Py_Version" in symbols:
        version_hex = _read_u32_at_vaddr(f, loads, symbols["Py_Version"][0])
    return _ObjectSymbols(symbols, loads, version_hex)


_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: st_name, st_info, st_other, st_shndx, value, size


def _wanted_symbols(section: SymbolTableSection) -> dict[str, tuple[int, int]]:
    """The _WANTED symbols of a symbol table, scanning its raw entries: pyelftools builds an
    object per symbol (0.75 s for libpython3.10's tables, during which the process's first
    samples have no Python frames); this takes milliseconds. A name is matched by where it
    lies in the string table (the linker may point a symbol at the tail of a longer name)."""
    strtab = section.stringtable.data()
    offsets: dict[int, str] = {}
    for name in _WANTED:
        needle = name.encode() + b"\0"
        at = strtab.find(needle)
        while at >= 0:
            offsets[at] = name
            at = strtab.find(needle, at + 1)
    out: dict[str, tuple[int, int]] = {}
    if not offsets or section["sh_entsize"] != _SYM.size:
        return out
    for st_name, _info, _other, shndx, value, size in _SYM.iter_unpack(section.data()):
        wanted = offsets.get(st_name)
        if wanted is not None and shndx != 0 and wanted not in out:  # 0: SHN_UNDEF
            out[wanted] = (value, size)
    return out


def _read_u32_at_vaddr(f: BinaryIO, loads: tuple[LoadSegment, ...], vaddr: int) -> int | None:
    """A 4-byte datum of the file at an ELF virtual address (Py_Version is `const unsigned
    long` in .rodata: its low 4 bytes, little endian, hold PY_VERSION_HEX)."""
    for seg in loads:
        if seg.vaddr <= vaddr and vaddr + 4 <= seg.vaddr + seg.filesz:
            f.seek(seg.offset + vaddr - seg.vaddr)
            data = f.read(4)
            return struct.unpack("<I", data)[0] if len(data) == 4 else None
    return None
