"""Error hierarchy shared by the three commands.

Each error carries the exit code its command ends with; commands raise them and `cli.run` prints
one line (`prog: error: ...`) with no traceback, as memray's `MemrayCommandError` does.
"""

from __future__ import annotations


class ProfilerError(Exception):
    """A problem the user can act on. The message names the problem and the fix."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ProfilerError):
    """Bad flags or arguments (argparse's own exit code)."""

    exit_code = 2


class RecordingFormatError(ProfilerError):
    """A recording that cannot be read: truncated, corrupt, or of an unknown schema version."""

    exit_code = 3


class EnvironmentProblem(ProfilerError):
    """The machine lacks something: root, BPF, kernel headers, bcc."""

    exit_code = 4


class OutputError(ProfilerError):
    """The output cannot be written."""

    exit_code = 5


class DeliveryError(ProfilerError):
    """A profile could not be delivered (it may wait in the spool for the next run)."""

    exit_code = 6
