"""Where ebpf-symbolize writes: `--out FILE` replaced only when the run succeeds, or stdout.

Opening --out with truncation before the input is read destroyed the recording when they were
the same file, and any failure left a truncated FILE. So a regular (or new) FILE is written
to a temporary file in its directory (mkstemp: O_EXCL, an unpredictable name, mode 0600) and
renamed over FILE at the end, as the recorder does with its output: FILE is either untouched
or complete. Paths that are not regular files (/dev/stdout, a FIFO, a device, a symlink) are
written in place: renaming over them would replace the device node or the link itself.

Write errors (a full disk, /dev/full, a closed descriptor) become one OutputError line.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable
from typing import BinaryIO

from recording.errors import OutputError, UsageError


class _Guarded:
    """A binary stream whose write errors are OutputError, naming where the output goes."""

    def __init__(self, raw: BinaryIO, where: str,
                 on_error: Callable[[], object] | None = None) -> None:
        self._raw = raw
        self._where = where
        self._on_error = on_error

    def _fail(self, exc: OSError) -> OutputError:
        if self._on_error is not None:
            self._on_error()
        why = exc.strerror or str(exc)
        return OutputError(f"cannot write {self._where}: {why}")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self._raw.write(data)
        except OSError as exc:
            raise self._fail(exc) from None

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError as exc:
            raise self._fail(exc) from None

    def __getattr__(self, name: str) -> object:
        return getattr(self._raw, name)  # closed, writable, ... for pyarrow's PythonFile


def _detach_stdout() -> None:
    """After stdout failed, point fd 1 at /dev/null: the interpreter's final flush of what
    is still buffered would otherwise print an "Exception ignored" traceback at exit."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


class Output:
    def __init__(self, path: str, recording: str) -> None:
        self.path = path
        self._tmp: str | None = None
        self._file: BinaryIO | None = None
        if path == "-":
            if sys.stdout is None:  # started with fd 1 closed (`>&-`)
                raise OutputError("stdout is closed; give --out FILE")
            self.stream: BinaryIO = _Guarded(sys.stdout.buffer, "stdout",  # type: ignore
                                             _detach_stdout)
            return
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise OutputError(f"cannot write --out {path}: {exc.strerror}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"--out {path} is a directory; give a file name")
        if st is not None and recording != "-" and _same_file(path, recording):
            raise UsageError(f"--out {path} is the recording being read; writing it would "
                             "destroy the recording: give another file")
        try:
            if st is None or stat.S_ISREG(st.st_mode):
                import tempfile  # --out FILE only: stdout needs none

                fd, self._tmp = tempfile.mkstemp(
                    dir=os.path.dirname(os.path.abspath(path)),
                    prefix=f".{os.path.basename(path)}.", suffix=".tmp")
                self._file = os.fdopen(fd, "wb")
            else:
                self._file = open(path, "wb")  # noqa: SIM115 - closed in commit/discard
        except OSError as exc:
            raise OutputError(f"cannot write --out {path}: {exc.strerror}") from None
        self.stream = _Guarded(self._file, f"--out {path}")  # type: ignore[assignment]

    def commit(self) -> None:
        """All was written: make it --out FILE (a no-op for stdout)."""
        if self._file is None:
            self.stream.flush()
            return
        try:
            self._file.flush()
            if self._tmp is not None:
                os.fsync(self._file.fileno())  # the rename must not expose an empty file
            self._file.close()
            if self._tmp is not None:
                os.replace(self._tmp, self.path)
                self._tmp = None
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write --out {self.path}: {exc.strerror}") from None

    def discard(self) -> None:
        """The run failed: leave --out FILE as it was."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False
