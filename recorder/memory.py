"""Keeping the recorder's resident memory flat over a run of days (glibc malloc, compiler pages).

What a system-wide recorder measured before these settings (docs/performance.md, soak): of
~300 MiB RSS, ~100 MiB were free chunks glibc malloc kept: its main arena and the unwind-table
loader thread's arena grew around transient buffers (a table read from the cache, 15 MiB for
libLLVM; its kernel-form copy; each drain's batches) and, with the mmap threshold glibc raises
after every large free (malloc/malloc.c: "dynamic mmap threshold", up to 32 MiB), later large
buffers came from the arenas too, where freeing one returns nothing to the kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools

# mallopt parameters (glibc malloc/malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Blocks of at least this size are mmapped, and unmapped when freed. Setting it also turns
# off glibc's dynamic raising of the threshold (mallopt(3)).
MMAP_THRESHOLD_BYTES = 256 << 10
# The main thread and the unwind-table loader; more threads share them (the native ones of
# bcc and Arrow allocate little).
ARENA_MAX = 2
MADV_DONTNEED = 4
MADV_PAGEOUT = 21  # include/uapi/asm-generic/mman-common.h (Linux 5.4+)
_COMPILER_LIBS = ("libLLVM", "libclang")


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def tune_malloc() -> bool:
    """Large blocks straight from the kernel and back, two arenas; False where the C library
    has no mallopt (musl): then memory is only trimmed."""
    try:
        mallopt = _libc().mallopt
    except AttributeError:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) & bool(
        mallopt(M_ARENA_MAX, ARENA_MAX))


def trim() -> None:
    """Return the free pages of every malloc arena to the kernel (malloc_trim(3): since glibc
    2.8 it also releases whole free pages inside an arena, not only its top)."""
    with contextlib.suppress(AttributeError):
        _libc().malloc_trim(0)


def release_compiler_memory(smaps: str = "/proc/self/smaps") -> int:
    """Give back what bcc's in-process clang/LLVM used to compile the program: freed heap
    (malloc_trim) and the resident pages of libLLVM and libclang-cpp (10-55 MiB). Nothing
    after the compile runs LLVM. Returns the bytes of mappings let go.

    MADV_PAGEOUT alone left most of them: it skips pages that another process maps too
    (another bcc tool, a second recorder). MADV_DONTNEED only unmaps them from this process;
    it is used on mappings that hold no anonymous page (smaps' Anonymous: 0: never written,
    no relocation copied into them), where a later access reads the same bytes from the file
    again. Mappings with relocated pages (.data.rel.ro) are paged out only, never dropped."""
    trim()
    libc = _libc()
    released = 0
    for start, end, anonymous in _compiler_mappings(smaps):
        if anonymous == 0:
            libc.madvise(start, end - start, MADV_DONTNEED)
            released += end - start
        else:
            libc.madvise(start, end - start, MADV_PAGEOUT)  # a failure only keeps the pages
    return released


def _compiler_mappings(smaps: str) -> list[tuple[int, int, int]]:
    """(start, end, Anonymous kB) of libLLVM's and libclang's mappings; -1 for a writable one
    (a page written after smaps was read would be lost to MADV_DONTNEED)."""
    out: list[list[int]] = []
    current: list[int] | None = None
    try:
        with open(smaps) as f:
            for line in f:
                head = line.split(None, 6)
                if head and "-" in head[0] and not head[0].endswith(":"):
                    current = None
                    if len(head) >= 6 and any(lib in head[5] for lib in _COMPILER_LIBS):
                        start, end = (int(x, 16) for x in head[0].split("-"))
                        current = [start, end, -1]
                        out.append(current)
                        if "w" in head[1]:
                            current = None  # stays -1
                elif current is not None and head and head[0] == "Anonymous:":
                    current[2] = int(head[1])
    except (OSError, ValueError):
        return []
    return [(s, e, a) for s, e, a in out]
