"""What symbolization produces, every output format (sink) consumes and the uploader sends.

A Frame is one resolved (or unresolved, with a reason) location; a Profile is the set of
unique stacks with counts for one time window and one label set. Sinks in symbolizer/sinks/
and the uploader take Profiles; they never see the recording. Folded text read back
(profiles/folded.py) is a Profile too, whose frames carry names only unless the text has the
symbolizer's frames lines (profiles/folded_frames.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FrameKind(StrEnum):
    USER = "user"
    KERNEL = "kernel"
    VDSO = "vdso"
    JIT = "jit"
    PYTHON = "python"  # a CPython function (recorded code object; symbolizer/python.py)
    ROOT = "root"  # the process name that roots each stack (as Pyroscope's agent does)


@dataclass(frozen=True, slots=True)
class MappingInfo:
    """The recorded mapping a frame's address fell in (a /proc/PID/maps line of the
    recording host): what pprof's Mapping needs so that a tool holding the file, found by
    build ID or path, can symbolize the address itself (address - start + file_offset is
    the offset in the file)."""

    start: int
    limit: int  # end of the mapping (exclusive)
    file_offset: int
    path: str  # as recorded; [vdso], or [anon] for anonymous (JIT) memory
    build_id: str | None = None


@dataclass(frozen=True, slots=True, init=False)
class Frame:
    """One frame of a stack: a resolved name, or an unresolved address with its reason."""

    name: str  # display name: function, `libfoo.so+0x1a2b`, or `[unknown]`
    kind: FrameKind = FrameKind.USER
    address: int = 0  # absolute address in the process (0 for ROOT frames)
    object: str | None = None  # path of the object as recorded
    build_id: str | None = None
    elf_addr: int | None = None  # ELF virtual address within the object
    file: str | None = None  # with --lines
    line: int | None = None
    inlined: bool = False  # an inlined call inside the next frame (towards the leaf)
    reason: str | None = None  # set when unresolved: why
    start_line: int | None = None  # first line of the function (Python: co_firstlineno)
    mapping: MappingInfo | None = None  # the recorded mapping of `address` (user, vDSO, JIT)
    # Frames are shared by every stack that holds them, and stacks are dict keys hashed once
    # per sample: the hash is computed once, in __init__.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __init__(self, name: str, kind: FrameKind = FrameKind.USER, address: int = 0,
                 object: str | None = None, build_id: str | None = None,
                 elf_addr: int | None = None, file: str | None = None,
                 line: int | None = None, inlined: bool = False, reason: str | None = None,
                 start_line: int | None = None, mapping: MappingInfo | None = None) -> None:
        # Written by hand: the frozen dataclass's own __init__ sets each field through
        # object.__setattr__ (3.4 us a frame; ~25,000 frames for 30 s of a busy host). The
        # slots' descriptors set them directly (1.5 us); the class stays frozen to anyone
        # else. The hash covers the fields that tell frames apart in practice: equal frames
        # have equal ones, so it agrees with the generated __eq__.
        _SET_NAME(self, name)
        _SET_KIND(self, kind)
        _SET_ADDRESS(self, address)
        _SET_OBJECT(self, object)
        _SET_BUILD_ID(self, build_id)
        _SET_ELF_ADDR(self, elf_addr)
        _SET_FILE(self, file)
        _SET_LINE(self, line)
        _SET_INLINED(self, inlined)
        _SET_REASON(self, reason)
        _SET_START_LINE(self, start_line)
        _SET_MAPPING(self, mapping)
        _SET_HASH(self, hash((name, address, elf_addr, line)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def resolved(self) -> bool:
        return self.reason is None


# the slots' own setters (member descriptors of the class dataclass made), for Frame.__init__
(_SET_NAME, _SET_KIND, _SET_ADDRESS, _SET_OBJECT, _SET_BUILD_ID, _SET_ELF_ADDR, _SET_FILE,
 _SET_LINE, _SET_INLINED, _SET_REASON, _SET_START_LINE, _SET_MAPPING, _SET_HASH) = (
    Frame.__dict__[f].__set__ for f in (
        "name", "kind", "address", "object", "build_id", "elf_addr", "file", "line",
        "inlined", "reason", "start_line", "mapping", "_hash"))

Stack = tuple[Frame, ...]  # root first


@dataclass
class Profile:
    """Unique stacks and counts of one window and one label set."""

    start_ns: int
    end_ns: int
    sample_rate: int
    labels: dict[str, str] = field(default_factory=dict)
    stacks: dict[Stack, int] = field(default_factory=dict)
    # the same counts by process, (stack, pid, comm) -> count, when the input named them (a
    # recording does, folded text does not): for sinks that keep processes apart (parquet)
    processes: dict[tuple[Stack, int, str], int] = field(default_factory=dict)

    def add(self, stack: Stack, count: int, pid: int | None = None, comm: str = "") -> None:
        self.stacks[stack] = self.stacks.get(stack, 0) + count
        if pid is not None:
            key = (stack, pid, comm)
            self.processes[key] = self.processes.get(key, 0) + count

    def merge(self, other: Profile) -> None:
        """Add other's counts to this profile's (window and labels stay this profile's)."""
        for stack, n in other.stacks.items():
            self.stacks[stack] = self.stacks.get(stack, 0) + n
        for key, n in other.processes.items():
            self.processes[key] = self.processes.get(key, 0) + n

    @property
    def total(self) -> int:
        return sum(self.stacks.values())
