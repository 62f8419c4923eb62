"""Symbol tables cached by build ID: at most N in memory (LRU), all on disk.

A build ID names the exact bytes of an object, so a table parsed once is valid forever:
{cache}/symbols/xx/rest.sym holds the compact table (symtab.py), rest.json where it came from.
A partial table (.dynsym, MiniDebugInfo) is cached too, but each run still looks for a full
source first (a debug package may have been installed since), which costs a few stat() calls:
a partial table read from the binary itself records that the binary has no .symtab and its
.gnu_debuglink, so the binary is not parsed again (its build ID names its bytes).
Objects without a build ID are cached in memory only: their path may hold other bytes later.
"""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from collections.abc import Callable

from recording.buildid import is_build_id
from recording.private import make_private_dirs
from recording.untrusted import open_regular
from symbolizer.sources import ObjectSymbols
from symbolizer.symtab import CacheFormatError, SymbolTable


class SymbolCache:
    def __init__(self, cache_dir: str | None, capacity: int) -> None:
        self.dir = os.path.join(cache_dir, "symbols") if cache_dir else None
        self.capacity = max(1, capacity)
        self._mem: OrderedDict[str, ObjectSymbols] = OrderedDict()
        self._warned = False
        self.disk_hits = 0
        self.parsed = 0

    def get(self, key: str, build_id: str | None,
            find: Callable[[ObjectSymbols | None], ObjectSymbols]) -> ObjectSymbols:
        hit = self._mem.get(key)
        if hit is not None:
            self._mem.move_to_end(key)
            return hit
        if not is_build_id(build_id):
            build_id = None  # never a file name made of a string that is not a build ID
        cached = self._load(build_id) if build_id else None
        if cached is not None and cached.full:
            self.disk_hits += 1
            result = cached
        else:
            result = find(cached)
            self.parsed += 1
            # an empty table is worth keeping when it is what the binary has (an executable
            # exports no functions): it spares parsing the binary in the next run
            if build_id and result is not cached and (len(result.table) or result.binary_read) and (
                cached is None or result.source != cached.source
                or result.binary_read != cached.binary_read
            ):
                self._store(build_id, result)
        self._mem[key] = result
        while len(self._mem) > self.capacity:
            self._mem.popitem(last=False)
        return result

    def _paths(self, build_id: str) -> tuple[str, str]:
        assert self.dir is not None and is_build_id(build_id)
        base = os.path.join(self.dir, build_id[:2], build_id[2:])
        return base + ".sym", base + ".json"

    def _load(self, build_id: str) -> ObjectSymbols | None:
        if self.dir is None:
            return None
        sym, meta = self._paths(build_id)
        try:
            # --cache-dir may be a shared directory: only regular files, no symlink followed
            with open_regular(meta, follow_symlinks=False) as f:
                info = json.load(f)
            with open_regular(sym, follow_symlinks=False) as f:
                table = SymbolTable.from_bytes(f.read())
            dwarf = info.get("dwarf_path")
            link = info.get("debuglink")
            return ObjectSymbols(table, str(info["source"]), bool(info["full"]),
                                 dwarf if dwarf and os.path.exists(dwarf) else None,
                                 info.get("problem"), bool(info.get("binary_read")),
                                 (str(link[0]), int(link[1])) if link else None)
        except (OSError, ValueError, KeyError, TypeError, CacheFormatError):
            return None  # absent or damaged: parsed again and rewritten

    def _store(self, build_id: str, syms: ObjectSymbols) -> None:
        if self.dir is None:
            return
        sym, meta = self._paths(build_id)
        try:
            make_private_dirs(self.dir)  # 0700: symbols of root-only binaries live here
            make_private_dirs(os.path.dirname(sym))
            _atomic_write(sym, syms.table.to_bytes())
            _atomic_write(meta, json.dumps({"source": syms.source, "full": syms.full,
                                            "dwarf_path": syms.dwarf_path,
                                            "problem": syms.problem,
                                            "binary_read": syms.binary_read,
                                            "debuglink": syms.debuglink}).encode())
        except OSError as exc:
            if not self._warned:
                self._warned = True
                print(f"ebpf-symbolize: warning: symbol cache {self.dir} not writable "
                      f"({exc.strerror}); continuing without it (--cache-dir DIR)",
                      file=sys.stderr)


def _atomic_write(path: str, data: bytes) -> None:
    # mkstemp: O_EXCL, an unpredictable name, mode 0600; the rename keeps the mode
    import tempfile  # cold runs only: warm ones write nothing

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
