"""Finding the symbols of a recorded object, by build ID first.

Search order, best first (a full .symtab names static functions too; .dynsym only exported
ones):
 1. --debug-dir DIR/.build-id/xx/rest.debug (the layout of Debian's -dbgsym packages and of
    `objcopy --only-keep-debug` trees);
 2. the recorded path (under --sysroot when given), if it still has its .symtab;
 3. its .gnu_debuglink, checked by CRC32, in the directories gdb searches: the binary's own
    directory, its .debug/ subdirectory, and DIR/<binary's directory> for each debug dir;
 4. a debuginfod server;
 5. MiniDebugInfo (.gnu_debugdata: an xz-compressed ELF holding the .symtab entries that
    .dynsym lacks, as Fedora ships them), merged with .dynsym;
 6. .dynsym alone.
Every candidate's build ID is checked against the recorded one; a file whose build ID differs
is never used, because a wrong name is worse than none.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recording.buildid import build_id_problem, is_build_id
from recording.untrusted import (
    file_size,
    open_regular,
    recorded_path_problem,
    resolve_in_root,
)
from symbolizer.elfsyms import (
    ElfReadError,
    ElfSymbols,
    inflate_debugdata,
    read_elf_symbols,
    read_elf_symbols_bytes,
)
from symbolizer.normalize import ObjectInfo, strip_deleted
from symbolizer.options import SymbolizeOptions
from symbolizer.plt import plt_stubs
from symbolizer.symtab import SymbolTable

if TYPE_CHECKING:
    from symbolizer.debuginfod import DebuginfodClient


@dataclass(frozen=True)
class ObjectSymbols:
    """The best symbols found for one object, and what is missing when they are partial."""

    table: SymbolTable
    source: str  # where the table came from, for the report
    full: bool  # a .symtab (static functions included), not just exported names
    dwarf_path: str | None = None  # a file with .debug_info, for --lines
    problem: str | None = None  # why no full table was found (None when full)
    # A partial table read from the binary itself, whose build ID matched: the binary has no
    # .symtab, and its .gnu_debuglink is this. A build ID names the bytes, so a warm run need
    # not parse the binary again to look for better sources (the costly part of a warm run).
    binary_read: bool = False
    debuglink: tuple[str, int] | None = None


def build_id_path(debug_dir: str, build_id: str) -> str:
    problem = build_id_problem(build_id)
    if problem:  # never a path out of the tree, whoever calls
        raise ValueError(f"not a build ID ({problem})")
    return os.path.join(debug_dir, ".build-id", build_id[:2], build_id[2:] + ".debug")


def _read_file(path: str, follow_symlinks: bool = True) -> ElfSymbols:
    with open_regular(path, follow_symlinks=follow_symlinks) as f:
        return read_elf_symbols(f, file_size(f))


def _crc32_of(path: str, follow_symlinks: bool) -> int:
    crc = 0
    with open_regular(path, follow_symlinks=follow_symlinks) as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


class SymbolFinder:
    def __init__(self, options: SymbolizeOptions) -> None:
        self.options = options
        self.debuginfod: DebuginfodClient | None = None
        if options.debuginfod_urls:
            from symbolizer.debuginfod import DebuginfodClient  # only with servers to ask

            self.debuginfod = DebuginfodClient(
                options.debuginfod_urls, options.cache_dir, options.debuginfod_timeout_s,
                options.debuginfod_max_time_s, options.debuginfod_max_size)

    def host_path(self, recorded: str) -> tuple[str | None, str | None]:
        """(where the recorded path is on this host, None), or (None, why it is refused).
        Under --sysroot the path is resolved inside it as chroot would (`..` and absolute
        symlinks stay in the root), so its last component is never a symlink either."""
        path = strip_deleted(recorded)
        problem = recorded_path_problem(path)
        if problem:
            return None, f"recorded path refused ({problem})"
        if self.options.sysroot:
            try:
                return resolve_in_root(self.options.sysroot, path), None
            except OSError as exc:
                return None, f"{path} under --sysroot: {exc.strerror}"
        return path, None

    def find(self, obj: ObjectInfo, fallback: ObjectSymbols | None = None) -> ObjectSymbols:
        """Best symbols for obj. `fallback` is a partial table from the disk cache: when no
        full source turns up, it is returned instead of parsing the partial sources again."""
        if obj.data is not None:
            return self._in_memory(obj)
        # The engine refuses bad build IDs as it reads a recording; an ObjectInfo made
        # elsewhere gets the same check before its build ID names any file.
        bid = obj.build_id if is_build_id(obj.build_id) else None
        notes: list[str] = []

        def accept(path: str, follow_symlinks: bool = True) -> ElfSymbols | None:
            """syms of path when its build ID matches the recorded one, else None (noted).
            follow_symlinks=False for files in directories the recording names (other users'
            directories); debug directories are the operator's, and Fedora's .build-id
            entries are symlinks."""
            try:
                syms = _read_file(path, follow_symlinks)
            except FileNotFoundError:
                return None
            except (OSError, ElfReadError) as exc:
                notes.append(f"{path} unreadable ({exc})")
                return None
            if bid and syms.build_id != bid:
                notes.append(f"build ID mismatch: {path} has {syms.build_id or 'none'}")
                return None
            return syms

        host, refused = self.host_path(obj.path)
        read: dict[str, ElfSymbols | None] = {}  # the binary, read at most once

        def runtime() -> ElfSymbols | None:
            if "binary" not in read:
                read["binary"] = (accept(host, False) if host is not None
                                  and os.path.lexists(host) else None)
            return read["binary"]

        def full(path: str, syms: ElfSymbols, how: str) -> ObjectSymbols:
            # A debug file's .plt is SHT_NOBITS: the stubs' names come from the binary, or
            # from the partial table cached from it (so a warm run need not parse it again).
            if len(syms.plt) or path == host:
                plt = syms.plt
            elif fallback is not None and fallback.binary_read:
                plt = plt_stubs(fallback.table)
            else:
                rt = runtime()
                plt = rt.plt if rt is not None else SymbolTable.empty()
            table = syms.symtab.merged(plt) if len(plt) else syms.symtab
            return ObjectSymbols(table, f"{how} {path}", True,
                                 path if syms.has_debug_info else None)

        # 1. build-id trees
        if bid:
            for d in self.options.debug_dirs:
                p = build_id_path(d, bid)
                if os.path.exists(p) and (s := accept(p)) and len(s.symtab):
                    return full(p, s, "debug file")

        # 2. the object itself (known from the cache entry, when it came from the binary)
        if refused:
            notes.append(refused)
        known = fallback is not None and fallback.binary_read and bid is not None
        binary = None
        debuglink = fallback.debuglink if fallback is not None and known else None
        if not known and host is not None:
            binary = runtime()
            if binary is None and not os.path.lexists(host):
                notes.append(f"object missing: {host} not found")
            if binary is not None and len(binary.symtab):
                return full(host, binary, "symbols of")
            debuglink = binary.debuglink if binary is not None else None

        # 3. .gnu_debuglink
        if debuglink and host is not None:
            name, crc = debuglink
            for p, follow in self._debuglink_candidates(obj.path, host, name):
                if not os.path.lexists(p):
                    continue
                try:
                    if _crc32_of(p, follow) != crc:
                        notes.append(f"{p}: .gnu_debuglink CRC mismatch")
                        continue
                except OSError as exc:
                    notes.append(f"{p} unreadable ({exc})")
                    continue
                if (s := accept(p, follow)) and len(s.symtab):
                    return full(p, s, "debuglink")

        # 4. debuginfod
        if bid and self.debuginfod is not None:
            path, problem = self.debuginfod.fetch(bid)
            if path:
                s = accept(path)
                if s is not None and len(s.symtab):
                    return full(path, s, "debuginfod")
                self.debuginfod.discard(path)
            elif problem:
                notes.append(problem)

        no_debug = (f"no debug file for build ID {bid}" if bid
                    else f"no build ID to find a debug file by ({obj.build_id_problem})"
                    if obj.build_id_problem else "no build ID to find a debug file by")
        problem = "; ".join([no_debug, *notes])
        if fallback is not None:
            return ObjectSymbols(fallback.table, fallback.source, False,
                                 fallback.dwarf_path, problem,
                                 known or (binary is not None and bid is not None), debuglink)
        if binary is None:
            return ObjectSymbols(SymbolTable.empty(), "nothing", False, None, problem)

        # 5. MiniDebugInfo, 6. .dynsym
        table, source = binary.dynsym, f".dynsym of {host}"
        if len(binary.plt):
            table = table.merged(binary.plt)
        if binary.debugdata:
            try:
                mini = read_elf_symbols_bytes(inflate_debugdata(binary.debugdata))
                table, source = table.merged(mini.symtab), f"MiniDebugInfo and .dynsym of {host}"
            except ElfReadError as exc:
                notes.append(f"MiniDebugInfo unusable ({exc})")
        return ObjectSymbols(table, source, False, host if binary.has_debug_info else None,
                             problem, binary_read=bid is not None,
                             debuglink=binary.debuglink)

    def _debuglink_candidates(self, recorded: str, host: str, name: str
                              ) -> list[tuple[str, bool]]:
        """(path, follow symlinks) where gdb looks for a .gnu_debuglink file: next to the
        binary and in its .debug/ (directories the recording names: no symlink followed at
        the end), then under each debug dir."""
        name = os.path.basename(name)  # a link is a file name; never follow a path out of dirs
        if name in ("", ".", "..") or "\0" in name:
            return []
        rec_dir = os.path.dirname(strip_deleted(recorded))  # canonical: host_path checked it
        host_dir = os.path.dirname(host)
        out = [(os.path.join(host_dir, name), False),
               (os.path.join(host_dir, ".debug", name), False)]
        out += [(os.path.join(d, rec_dir.lstrip("/"), name), True)
                for d in self.options.debug_dirs]
        return out

    def _in_memory(self, obj: ObjectInfo) -> ObjectSymbols:
        assert obj.data is not None
        try:
            s = read_elf_symbols_bytes(obj.data)
        except ElfReadError as exc:
            return ObjectSymbols(SymbolTable.empty(), "recorded image", False, None,
                                 f"recorded {obj.path} image unreadable ({exc})")
        table = s.symtab.merged(s.dynsym) if len(s.symtab) else s.dynsym
        if len(s.plt):
            table = table.merged(s.plt)
        return ObjectSymbols(table, f"recorded {obj.path} image", True)
