"""Frames for addresses: user (ELF objects), vDSO, JIT (perf map) and kernel.

Every unique (snapshot, address, is-return) is resolved once per run and its frames kept;
samples then only look frames up. Return addresses (every frame but the leaf) are looked up at
addr - 1, as perf does: the return address is the instruction after the call, which may
already belong to the next function or line. Signal trampolines and the entries after them
are exact (symbolizer/sigframes.py): `user_stack` decides that per stack.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from profiles.model import Frame, FrameKind, MappingInfo
from recording.pyframes import is_code_entry, native_entries
from symbolizer.cache import SymbolCache
from symbolizer.demangle import demangle
from symbolizer.linecache import LineCache
from symbolizer.normalize import (
    VDSO_PATH,
    AbsAddr,
    Mapping,
    MappingIndex,
    Normalized,
    ObjectInfo,
    Snapshot,
    strip_deleted,
)
from symbolizer.options import SymbolizeOptions
from symbolizer.report import Unresolved
from symbolizer.sigframes import NORMAL, TRAMPOLINES, mark_of, next_is_exact
from symbolizer.sources import ObjectSymbols, SymbolFinder
from symbolizer.symtab import SymbolEntry, SymbolTable

UNKNOWN = "[unknown]"
_MAPPING_INFOS_KEPT = 65536
Frames = tuple[Frame, ...]  # root first: callers before the (inlined) callee
Resolved = tuple[Frames, Unresolved | None]
LineEntry = tuple[str | None, str | None, int | None, bool]  # function, file, line, inlined
LinesFn = Callable[[str, list[int]], dict[int, list[LineEntry]]]


def load_lines_fn() -> LinesFn | None:
    """symbolizer/lines.py's resolve_lines, when that module is installed."""
    try:
        mod = importlib.import_module("symbolizer.lines")
    except ImportError:
        return None
    fn = getattr(mod, "resolve_lines", None)
    return fn if callable(fn) else None


@dataclass(frozen=True)
class _Pending:
    """A resolved user address waiting for its --lines expansion."""

    pid: int
    key: tuple[int, int, bool]
    frame: Frame
    dwarf_path: str | None


def object_label(path: str) -> str:
    """Pyroscope names unresolved frames `<module basename>+0x<offset>`."""
    return os.path.basename(strip_deleted(path)) or path


class Resolver:
    def __init__(self, options: SymbolizeOptions, index: MappingIndex,
                 lines_fn: LinesFn | None = None) -> None:
        self.options = options
        self.index = index
        self.finder = SymbolFinder(options)
        self.cache = SymbolCache(options.cache_dir, options.symbol_cache_size)
        self.lines_fn = lines_fn
        self.line_cache = LineCache(options.cache_dir if lines_fn else None)
        self._ksym_entries: list[SymbolEntry] = []
        self._ktable: SymbolTable | None = None
        self._kmods: list[tuple[int, int, str]] = []
        self._perfmap_entries: dict[int, list[SymbolEntry]] = {}
        self._perfmaps: dict[int, SymbolTable] = {}
        # pid -> (maps_seq, addr, is_return) -> frames; per pid so a stream can forget a pid
        self._user: dict[int, dict[tuple[int, int, bool], Resolved]] = {}
        # the same keys -> sigframes mark, for the few entries that are not NORMAL
        self._marks: dict[int, dict[tuple[int, int, bool], int]] = {}
        self._kernel: dict[tuple[int, bool], Resolved] = {}
        # one MappingInfo per recorded mapping, shared by its frames (pprof's Mapping)
        self._mapping_infos: dict[tuple[Mapping, str | None], MappingInfo] = {}

    # --- recorded symbol rows -------------------------------------------------------------
    def add_ksym(self, addr: int, size: int, name: str) -> None:
        self._ksym_entries.append(SymbolEntry(addr, size, name.encode(), 1))
        self._ktable = None

    def add_kmod(self, name: str, addr: int, size: int) -> None:
        self._kmods.append((addr, addr + size, name))

    def add_perfmap(self, pid: int, addr: int, size: int, name: str) -> None:
        self._perfmap_entries.setdefault(pid, []).append(SymbolEntry(addr, size, name.encode()))
        self._perfmaps.pop(pid, None)

    def mapping_info(self, m: Mapping, build_id: str | None) -> MappingInfo:
        key = (m, build_id)
        info = self._mapping_infos.get(key)
        if info is None:
            if len(self._mapping_infos) > _MAPPING_INFOS_KEPT:  # a long stream: bounded
                self._mapping_infos.clear()
            info = self._mapping_infos[key] = MappingInfo(
                m.start, m.end, m.file_offset, m.path or "[anon]", build_id)
        return info

    def forget(self, pid: int, maps_seqs: Iterable[int] | None = None) -> None:
        """Drop what is kept for a pid (all of it, or the frames of some snapshots)."""
        if maps_seqs is None:
            self._user.pop(pid, None)
            self._marks.pop(pid, None)
            self._perfmap_entries.pop(pid, None)
            self._perfmaps.pop(pid, None)
            return
        drop = set(maps_seqs)
        for kept in (self._user.get(pid), self._marks.get(pid)):
            if kept:
                for key in [k for k in kept if k[0] in drop]:
                    del kept[key]

    def retained_pids(self) -> set[int]:
        return set(self._user) | set(self._perfmap_entries)

    # --- user frames ---------------------------------------------------------------------
    def user(self, snap: Snapshot | None, pid: int, addr: int, is_return: bool) -> Resolved:
        key = (snap.maps_seq if snap else -1, addr, is_return)
        got = self._user.get(pid, {}).get(key)
        if got is None:
            self.prepare_user([(snap, pid, addr, is_return)])
            got = self._user[pid][key]
        return got

    def user_stack(self, snap: Snapshot | None, pid: int, stack: list[int],
                   unwinder: str | None,
                   python: Callable[[int, int], Resolved] | None = None) -> list[Resolved]:
        """Frames of each entry of a user stack (leaf first): the leaf, signal trampolines
        and the entries sigframes.next_is_exact says are exact are looked up as they are,
        the other entries as return addresses. A Python frame pair (recording/pyframes.py)
        goes to `python` and leaves the native exactness as it was (the first native entry
        is the sampled instruction even when Python frames come before it)."""
        out = []
        exact = True
        seq = snap.maps_seq if snap else -1
        i, n = 0, len(stack)
        while i < n:
            addr = stack[i]
            if is_code_entry(addr) and i + 1 < n:
                if python is not None:
                    out.append(python(addr, stack[i + 1]))
                i += 2
                continue
            out.append(self.user(snap, pid, addr, not exact))
            marks = self._marks.get(pid)
            mark = marks.get((seq, addr, not exact), NORMAL) if marks else NORMAL
            exact = next_is_exact(mark, unwinder)
            i += 1
        return out

    def prepare_user_stacks(self, stacks: Iterable[tuple[Snapshot | None, int, list[int],
                                                         str | None]]) -> None:
        """Resolve the entries of many stacks at once (one DWARF pass per object for
        --lines); entries that turn out exact after a signal frame are resolved after."""
        stacks = list(stacks)
        self.prepare_user((snap, pid, a, ret) for snap, pid, stack, _u in stacks
                          for a, ret in native_entries(stack))
        for snap, pid, stack, unwinder in stacks:
            if self._marks.get(pid):
                self.user_stack(snap, pid, stack, unwinder)

    def prepare_user(self, wanted: Iterable[tuple[Snapshot | None, int, int, bool]]) -> None:
        """Resolve many addresses at once, so --lines reads each object's DWARF once."""
        pending: list[_Pending] = []
        for snap, pid, addr, is_return in wanted:
            key = (snap.maps_seq if snap else -1, addr, is_return)
            per_pid = self._user.get(pid)
            if per_pid is None:
                per_pid = self._user[pid] = {}
            elif key in per_pid:
                continue
            lookup = AbsAddr(addr - 1 if is_return and addr else addr)
            frame, unresolved, dwarf, mark = self._user_frame(snap, pid, AbsAddr(addr), lookup)
            per_pid[key] = ((frame,), unresolved)
            if mark != NORMAL:
                self._marks.setdefault(pid, {})[key] = mark
            if self.lines_fn and dwarf and frame.elf_addr is not None:
                pending.append(_Pending(pid, key, frame, dwarf))
        if pending:
            self._expand_lines(pending)

    def _user_frame(self, snap: Snapshot | None, pid: int, addr: AbsAddr, lookup: AbsAddr
                    ) -> tuple[Frame, Unresolved | None, str | None, int]:
        n: Normalized = self.index.normalize(snap, lookup)
        m = n.mapping
        if m is None:
            reason = n.reason or "unmapped"
            return (Frame(UNKNOWN, FrameKind.USER, addr, reason=reason),
                    Unresolved("[unmapped]", None, reason), None, NORMAL)
        if m.anonymous:
            info = self.mapping_info(m, None)
            hit = self._perfmap(pid).lookup(lookup)
            if hit:
                return Frame(hit[0], FrameKind.JIT, addr, mapping=info), None, None, NORMAL
            reason = "anonymous executable memory without a perf map entry"
            return (Frame(UNKNOWN, FrameKind.JIT, addr, reason=reason, mapping=info),
                    Unresolved("[anonymous]", None, reason), None, NORMAL)
        kind = FrameKind.VDSO if m.path == VDSO_PATH else FrameKind.USER
        label = object_label(m.path)
        obj = n.obj
        bid = obj.build_id if obj else None
        info = self.mapping_info(m, bid)
        if obj is None or n.elf_addr is None:
            reason = n.reason or "object not recorded"
            return (Frame(f"{label}+0x{n.file_offset or 0:x}", kind, addr, m.path, bid,
                          None, reason=reason, mapping=info),
                    Unresolved(m.path, bid, reason), None, NORMAL)
        syms = self.symbols(obj)
        elf_addr: int = n.elf_addr
        hit = None
        if lookup != addr:
            # a handler's return address is the trampoline's first byte: look it up as is
            # (a bisect; a name is decoded only when a symbol starts right there)
            exact = syms.table.lookup(elf_addr + 1)
            if exact is not None and exact[1] == elf_addr + 1 and exact[0] in TRAMPOLINES:
                hit, elf_addr = exact, elf_addr + 1
        hit = hit or syms.table.lookup(elf_addr)
        if hit:
            name = demangle(hit[0])
            return (Frame(name, kind, addr, m.path, bid, elf_addr, mapping=info),
                    None, syms.dwarf_path, mark_of(name))
        reason = self._miss_reason(syms)
        return (Frame(f"{label}+0x{elf_addr:x}", kind, addr, m.path, bid, elf_addr,
                      reason=reason, mapping=info),
                Unresolved(m.path, bid, reason), syms.dwarf_path, NORMAL)

    def symbols(self, obj: ObjectInfo) -> ObjectSymbols:
        return self.cache.get(obj.object_id, obj.build_id,
                              lambda fallback: self.finder.find(obj, fallback))

    @staticmethod
    def _miss_reason(syms: ObjectSymbols) -> str:
        if not len(syms.table):
            return f"no symbols: {syms.problem}" if syms.problem else "no symbols"
        if syms.full:
            return f"no symbol covers the address in {syms.source}"
        return f"not an exported function ({syms.source}); {syms.problem}"

    def _expand_lines(self, pending: list[_Pending]) -> None:
        assert self.lines_fn is not None
        by_path: dict[str, list[_Pending]] = {}
        for p in pending:
            by_path.setdefault(p.dwarf_path or "", []).append(p)
        for path, items in by_path.items():
            bid = items[0].frame.build_id  # one DWARF file: one object
            table = self.line_cache.load(bid)
            missing = sorted({p.frame.elf_addr or 0 for p in items} - table.keys())
            if missing:
                try:
                    got = self.lines_fn(path, missing)
                except Exception as exc:
                    # DWARF readers fail on odd debug info; names from the symbol table stand.
                    print(f"ebpf-symbolize: warning: --lines failed for {path}: {exc}",
                          file=sys.stderr)
                    continue
                table.update((a, got.get(a, [])) for a in missing)
                self.line_cache.store(bid, table)
            for p in items:
                entries = table.get(p.frame.elf_addr or 0)
                if not entries:
                    continue
                # resolve_lines lists innermost first (as `addr2line -i` does); frames go
                # root first, so the outermost (the real function) comes first here.
                f = p.frame
                frames = []
                for func, file, line, inlined in reversed(entries):
                    # The function itself keeps its symbol-table name: DWARF's drops the
                    # `.isra.0`/`.constprop.0` of GCC's clones and Go's `.abi0`, and a
                    # profile with --lines must merge with one without.
                    name = demangle(func) if func and inlined else f.name
                    frames.append(Frame(name, f.kind, f.address, f.object, f.build_id,
                                        f.elf_addr, file, line, bool(inlined),
                                        mapping=f.mapping))
                per_pid = self._user[p.pid]
                per_pid[p.key] = (tuple(frames), per_pid[p.key][1])

    def _perfmap(self, pid: int) -> SymbolTable:
        table = self._perfmaps.get(pid)
        if table is None:
            table = self._perfmaps[pid] = SymbolTable.build(self._perfmap_entries.get(pid, []))
        return table

    # --- kernel frames -------------------------------------------------------------------
    def kernel(self, addr: int, is_return: bool) -> Resolved:
        key = (addr, is_return)
        got = self._kernel.get(key)
        if got is None:
            got = self._kernel[key] = self._kernel_frame(addr, is_return)
        return got

    def _kernel_frame(self, addr: int, is_return: bool) -> Resolved:
        if self._ktable is None:
            self._ktable = SymbolTable.build(self._ksym_entries)
        lookup = addr - 1 if is_return and addr else addr
        hit = self._ktable.lookup(lookup)
        if hit:
            return (Frame(hit[0], FrameKind.KERNEL, addr),), None
        for start, end, name in self._kmods:
            if start <= lookup < end:
                reason = "kernel module address without a recorded symbol"
                return ((Frame(f"{name}+0x{lookup - start:x}", FrameKind.KERNEL, addr,
                               reason=reason),),
                        Unresolved(f"[kernel] {name}", None, reason))
        reason = "kernel address without a recorded symbol"
        return ((Frame(UNKNOWN, FrameKind.KERNEL, addr, reason=reason),),
                Unresolved("[kernel]", None, reason))
