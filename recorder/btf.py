"""Field offsets of the running kernel's structures, from its BTF (/sys/kernel/btf/vmlinux).

bcc compiles against Debian's 6.1 headers here, whose task_struct is not the running kernel's,
so bpf/profile.c reads no kernel structure through headers. Where a field is needed (the
sampled thread's fs base, which is pthread_self() on glibc x86-64, to find CPython 3.8-3.10's
thread state), its offset comes from the kernel's own type information, as libbpf's CO-RE
relocations would compute it, and reaches the BPF program as data. The format is
Documentation/bpf/btf.rst: a header, then type records in id order (ids from 1), then strings.
Written by hand: only member offsets are needed, and pyelftools has no BTF reader.
"""

from __future__ import annotations

import functools
import struct

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
KIND_STRUCT, KIND_UNION, KIND_TYPEDEF = 4, 5, 8
_MODIFIERS = {8, 9, 10, 11, 18}  # typedef, volatile, const, restrict, type_tag
# bytes after struct btf_type, per kind: fixed, and per vlen entry
_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0),
          15: (0, 12), 17: (4, 0), 19: (0, 12)}


class BtfError(ValueError):
    pass


class Btf:
    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise BtfError("too short")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER.unpack_from(data))
        if magic != 0xEB9F:
            raise BtfError("not BTF")
        self._strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        self._types: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)]  # name, info, size/type, at
        self._data = data
        at, end = hdr_len + type_off, hdr_len + type_off + type_len
        while at < end:
            name, info, size = _TYPE.unpack_from(data, at)
            self._types.append((name, info, size, at + _TYPE.size))
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            fixed, per = _EXTRA.get(kind, (0, 0))
            at += _TYPE.size + fixed + per * vlen

    def _name(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode("ascii", "replace")

    def _struct_id(self, name: str) -> int:
        for tid, (n, info, _s, _a) in enumerate(self._types):
            if (info >> 24) & 0x1F == KIND_STRUCT and info & 0xFFFF and self._name(n) == name:
                return tid
        raise BtfError(f"no struct {name}")

    def _resolve(self, tid: int) -> int:
        for _ in range(32):
            _n, info, ref, _a = self._types[tid]
            if (info >> 24) & 0x1F not in _MODIFIERS:
                return tid
            tid = ref
        raise BtfError("type chain too long")

    def member(self, tid: int, name: str) -> tuple[int, int]:
        """(byte offset, type id) of a member, looking into anonymous structs and unions."""
        _n, info, _size, at = self._types[tid]
        kind_flag = info >> 31
        for i in range(info & 0xFFFF):
            mname, mtype, moff = struct.unpack_from("<III", self._data, at + 12 * i)
            bits = moff & 0xFFFFFF if kind_flag else moff
            if mname and self._name(mname) == name:
                return bits // 8, mtype
            if not mname:
                inner = self._resolve(mtype)
                if (self._types[inner][1] >> 24) & 0x1F in (KIND_STRUCT, KIND_UNION):
                    try:
                        off, t = self.member(inner, name)
                        return bits // 8 + off, t
                    except BtfError:
                        pass
        raise BtfError(f"no member {name}")

    def offset_of(self, struct_name: str, path: str) -> int:
        """Byte offset of a dotted member path, e.g. ("task_struct", "thread.fsbase")."""
        tid, total = self._struct_id(struct_name), 0
        for part in path.split("."):
            off, mtype = self.member(tid, part)
            total += off
            tid = self._resolve(mtype)
        return total


@functools.cache
def task_fsbase_offset(path: str = VMLINUX_BTF) -> int | None:
    """offsetof(struct task_struct, thread.fsbase) in the running kernel, or None."""
    try:
        with open(path, "rb") as f:
            return Btf(f.read()).offset_of("task_struct", "thread.fsbase")
    except (OSError, BtfError, struct.error):
        return None
