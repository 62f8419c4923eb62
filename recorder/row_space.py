"""Space in the kernel's `unwind_rows` array: extents of rows, handed out first fit and given
back when no process maps their object any more.

A continuous recorder sees every object the host ever runs: compilers, test binaries built
in /tmp, each with its own build ID. Handed out back to back and never given back, the array
fills within hours on a build machine, and every object after that (the long-running
interpreter that started last) unwinds by frame pointers. So an object whose last process
has exited keeps its rows only until the space is needed (recorder/unwinder.py evicts the
longest unused first): a compiler run every few seconds finds its table still there.
"""

from __future__ import annotations

import bisect


class RowSpace:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free: list[tuple[int, int]] = []  # (first row, rows), sorted, never adjacent
        self._end = 0  # rows beyond this were never handed out
        self.used = 0

    def alloc(self, count: int) -> int | None:
        """The first row of `count` free rows, or None when no extent is that large."""
        for i, (first, n) in enumerate(self._free):
            if n >= count:
                if n == count:
                    del self._free[i]
                else:
                    self._free[i] = (first + count, n - count)
                self.used += count
                return first
        if self._end + count <= self.capacity:
            first, self._end = self._end, self._end + count
            self.used += count
            return first
        return None

    def free(self, first: int, count: int) -> None:
        """Give back rows from alloc; neighbouring free extents merge."""
        if count <= 0:
            return
        self.used -= count
        i = bisect.bisect_left(self._free, (first, 0))
        if i > 0 and sum(self._free[i - 1]) == first:  # merge with the extent before
            i -= 1
            first, count = self._free[i][0], self._free[i][1] + count
            del self._free[i]
        if i < len(self._free) and first + count == self._free[i][0]:  # and the one after
            count += self._free[i][1]
            del self._free[i]
        if first + count == self._end:  # the tail goes back to never handed out
            self._end = first
        else:
            self._free.insert(i, (first, count))
