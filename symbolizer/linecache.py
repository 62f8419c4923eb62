"""--lines answers cached by build ID, so a warm run with --lines costs about what one
without does: DWARF is read only for addresses no earlier run asked about.

{cache}/lines/xx/rest.json maps an ELF address (hex) to its frames, innermost first, as
lines.resolve_lines answers ([function, file, line, inlined] each; [] for an address without
line information). A build ID names the exact bytes of the object and so of its DWARF: an
answer is valid forever, and each run adds the addresses it resolved. The same rules as the
symbol cache: 0700 directories, 0600 files written whole and renamed, only regular files
read and no symlink followed, a damaged file ignored and rewritten.
"""

from __future__ import annotations

import json
import os

from recording.buildid import is_build_id
from recording.private import make_private_dirs
from recording.untrusted import open_regular
from symbolizer.cache import _atomic_write

LineEntry = tuple[str | None, str | None, int | None, bool]
MAX_FILE = 64 << 20  # bytes of one object's answers: a larger file is ignored


class LineCache:
    def __init__(self, cache_dir: str | None) -> None:
        self.dir = os.path.join(cache_dir, "lines") if cache_dir else None
        self._warned = False

    def _path(self, build_id: str) -> str | None:
        if self.dir is None or not is_build_id(build_id):
            return None
        return os.path.join(self.dir, build_id[:2], build_id[2:] + ".json")

    def load(self, build_id: str | None) -> dict[int, list[LineEntry]]:
        path = self._path(build_id) if build_id else None
        if path is None:
            return {}
        try:
            with open_regular(path, follow_symlinks=False) as f:
                data = f.read(MAX_FILE + 1)
            if len(data) > MAX_FILE:
                return {}
            raw = json.loads(data)
            return {int(a, 16): [(_str(e[0]), _str(e[1]), _int(e[2]), bool(e[3])) for e in v]
                    for a, v in raw.items()}
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            return {}  # absent or damaged: answered from DWARF again and rewritten

    def store(self, build_id: str | None, table: dict[int, list[LineEntry]]) -> None:
        path = self._path(build_id) if build_id else None
        if path is None:
            return
        data = json.dumps({f"{a:x}": [list(e) for e in v] for a, v in table.items()})
        try:
            make_private_dirs(self.dir or "")
            make_private_dirs(os.path.dirname(path))
            _atomic_write(path, data.encode())
        except OSError:
            pass  # the symbol cache warns about an unwritable --cache-dir once


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None
