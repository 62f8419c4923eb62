"""Frames for addresses: user (ELF objects), vDSO, JIT (perf map) and kernel.

Every unique (snapshot, address, is-return) is resolved once per run and its frames kept;
samples then only look frames up. Return addresses (every frame but the leaf) are looked up at
addr - 1, as perf does: the return address is the instruction after the call, which may
already belong to the next function or line. Signal trampolines and the entries after them
are exact (symbolizer/sigframes.py): `user_stack` decides that per stack.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from profiles.model import Frame, FrameKind, MappingInfo
from recording.pyframes import all_native, is_code_entry, native_entries
from symbolizer.cache import SymbolCache
from symbolizer.demangle import demangle
from symbolizer.linecache import LineCache
from symbolizer.mapping_facts import MappingFacts, Span, file_spans, mapping_facts
from symbolizer.normalize import (
    AbsAddr,
    Mapping,
    MappingIndex,
    Normalized,
    ObjectInfo,
    Snapshot,
)
from symbolizer.options import SymbolizeOptions
from symbolizer.report import Unresolved
from symbolizer.sigframes import NORMAL, TRAMPOLINES, mark_of, next_is_exact
from symbolizer.sources import ObjectSymbols, SymbolFinder
from symbolizer.symtab import SymbolEntry, SymbolTable

UNKNOWN = "[unknown]"
# Bounds of the per-mapping facts and the name memo (a long stream meets new processes for
# days): past them, each starts again empty.
_MAPPING_FACTS_KEPT = 65536
_NAMES_KEPT = 262144
Frames = tuple[Frame, ...]  # root first: callers before the (inlined) callee
Resolved = tuple[Frames, Unresolved | None]
LineEntry = tuple[str | None, str | None, int | None, bool]  # function, file, line, inlined
LinesFn = Callable[[str, list[int]], dict[int, list[LineEntry]]]
# what a name lookup found: name, ELF address (moved to a trampoline's start), --lines file,
# sigframes mark, and the reason when nothing was found
_Named = tuple[str, int, str | None, int, str | None]


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
        self._kernel: dict[int, Resolved] = {}  # addr << 1 | is_return -> frames
        # per recorded mapping: its object, pprof Mapping and label (symbolizer/mapping_facts.py),
        # by id(): a frozen Mapping's hash is a Python call of five fields' hashes, and the
        # entry holds the mapping, so its id is not reused while the entry lives
        self._facts: dict[int, MappingFacts] = {}
        # object_id -> (ELF address << 1 | is_return) -> what the name lookup found there,
        # shared by every process that maps the object
        self._names: dict[str, dict[int, _Named]] = {}
        self._names_count = 0
        self._spans: dict[str, tuple[Span, ...]] = {}  # object_id -> its file_spans

    # --- recorded symbol rows -------------------------------------------------------------
    def add_ksym(self, addr: int, size: int, name: str) -> None:
        self._ksym_entries.append(SymbolEntry(addr, size, name.encode(), 1))
        self._ktable = None

    def add_kmod(self, name: str, addr: int, size: int) -> None:
        self._kmods.append((addr, addr + size, name))

    def add_perfmap(self, pid: int, addr: int, size: int, name: str) -> None:
        self._perfmap_entries.setdefault(pid, []).append(SymbolEntry(addr, size, name.encode()))
        self._perfmaps.pop(pid, None)

    def facts(self, m: Mapping) -> MappingFacts:
        """The mapping's shared facts; its MappingInfo is the one every frame in it holds."""
        got = self._facts.get(id(m))
        if got is None:
            if len(self._facts) > _MAPPING_FACTS_KEPT:  # a long stream: bounded
                self._facts.clear()
                self._spans.clear()
            obj = self.index.objects.get(m.object_id) if m.object_id else None
            info = MappingInfo(m.start, m.end, m.file_offset, m.path or "[anon]",
                               obj.build_id if obj is not None and not m.anonymous else None)
            spans: tuple[Span, ...] = ()
            if obj is not None and obj.loads:
                spans_of = self._spans.get(obj.object_id)
                if spans_of is None:
                    spans_of = self._spans[obj.object_id] = file_spans(obj)
                spans = spans_of
            got = self._facts[id(m)] = mapping_facts(m, obj, info, spans)
        return got

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
        seq = snap.maps_seq if snap else -1
        if stack and all_native(stack) and not self._marks.get(pid):
            # resolved already (prepare_user_stacks) and no signal frame: the leaf exact,
            # every other entry a return address
            per_pid = self._user.get(pid)
            if per_pid is not None:
                got = [per_pid.get((seq, stack[0], False))]
                got += [per_pid.get((seq, a, True)) for a in stack[1:]]
                if None not in got:
                    return got  # type: ignore[return-value]  # no None, checked
        out = []
        exact = True
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
        wanted: list[tuple[Snapshot | None, int, int, bool]] = []
        for snap, pid, stack, _u in stacks:
            if stack and all_native(stack):
                wanted.append((snap, pid, stack[0], False))
                wanted += [(snap, pid, a, True) for a in stack[1:]]
            else:
                wanted += [(snap, pid, a, ret) for a, ret in native_entries(stack)]
        self.prepare_user(wanted)
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
        m = snap.find(lookup) if snap is not None else None
        if m is not None and not m.anonymous:
            facts = self._facts.get(id(m)) or self.facts(m)
            elf = facts.elf_addr(lookup) if facts.spans else None
            if elf is not None:
                return self._object_frame(facts, addr, elf, lookup != addr)
        return self._other_frame(snap, pid, addr, lookup)

    def _object_frame(self, facts: MappingFacts, addr: AbsAddr, elf: int, is_return: bool
                      ) -> tuple[Frame, Unresolved | None, str | None, int]:
        """A frame in an ELF object at ELF address `elf` (of the lookup address)."""
        obj = facts.obj
        assert obj is not None  # facts.spans come from its program headers
        names = self._names.get(obj.object_id)
        if names is None:
            names = self._names[obj.object_id] = {}
        key = elf << 1 | is_return
        named = names.get(key)
        if named is None:
            if self._names_count >= _NAMES_KEPT:  # counted over all objects: bounded
                self._names.clear()
                self._names_count = 0
                names = self._names[obj.object_id] = {}
            named = names[key] = self._name_at(obj, elf, is_return)
            self._names_count += 1
        name, elf_addr, dwarf, mark, reason = named
        m = facts.mapping
        if reason is None:
            return (Frame(name, facts.kind, addr, m.path, facts.build_id, elf_addr,
                          mapping=facts.info), None, dwarf, mark)
        return (Frame(f"{facts.label}+0x{elf_addr:x}", facts.kind, addr, m.path,
                      facts.build_id, elf_addr, reason=reason, mapping=facts.info),
                facts.unresolved_for(reason), dwarf, NORMAL)

    def _name_at(self, obj: ObjectInfo, elf_addr: int, is_return: bool) -> _Named:
        """The symbol at an ELF address of the object, or why there is none."""
        syms = self.symbols(obj)
        hit = None
        if is_return:
            # a handler's return address is the trampoline's first byte: look it up as is
            # (a bisect; a name is decoded only when a symbol starts right there)
            exact = syms.table.lookup(elf_addr + 1)
            if exact is not None and exact[1] == elf_addr + 1 and exact[0] in TRAMPOLINES:
                hit, elf_addr = exact, elf_addr + 1
        hit = hit or syms.table.lookup(elf_addr)
        if hit:
            name = demangle(hit[0])
            return name, elf_addr, syms.dwarf_path, mark_of(name), None
        return "", elf_addr, syms.dwarf_path, NORMAL, self._miss_reason(syms)

    def _other_frame(self, snap: Snapshot | None, pid: int, addr: AbsAddr, lookup: AbsAddr
                     ) -> tuple[Frame, Unresolved | None, str | None, int]:
        """Frames outside an object's PT_LOAD bytes: unmapped, JIT code, an object not
        recorded, or an address only the page rounding of vaddr_of_offset places."""
        n: Normalized = self.index.normalize(snap, lookup)
        m = n.mapping
        if m is None:
            reason = n.reason or "unmapped"
            return (Frame(UNKNOWN, FrameKind.USER, addr, reason=reason),
                    Unresolved("[unmapped]", None, reason), None, NORMAL)
        facts = self.facts(m)
        if m.anonymous:
            hit = self._perfmap(pid).lookup(lookup)
            if hit:
                return Frame(hit[0], FrameKind.JIT, addr, mapping=facts.info), None, None, NORMAL
            reason = "anonymous executable memory without a perf map entry"
            return (Frame(UNKNOWN, FrameKind.JIT, addr, reason=reason, mapping=facts.info),
                    Unresolved("[anonymous]", None, reason), None, NORMAL)
        if n.obj is None or n.elf_addr is None:
            reason = n.reason or "object not recorded"
            return (Frame(f"{facts.label}+0x{n.file_offset or 0:x}", facts.kind, addr, m.path,
                          facts.build_id, None, reason=reason, mapping=facts.info),
                    facts.unresolved_for(reason), None, NORMAL)
        return self._object_frame(facts, addr, n.elf_addr, lookup != addr)

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
        key = addr << 1 | is_return
        got = self._kernel.get(key)
        if got is None:
            got = self._kernel[key] = self._kernel_frame(addr, is_return)
        return got

    def kernel_stack(self, stack: list[int]) -> list[Resolved]:
        """Frames of each entry of a kernel stack (leaf first; every entry but the leaf a
        return address), from the memo in one pass where all are known."""
        memo = self._kernel
        got = [memo.get(stack[0] << 1)]
        got += [memo.get(a << 1 | 1) for a in stack[1:]]
        if None in got:
            return [self.kernel(a, i > 0) for i, a in enumerate(stack)]
        return got  # type: ignore[return-value]  # no None, checked

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
