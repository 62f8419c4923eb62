"""Reading and emptying BPF hash maps in batches into reused buffers.

bcc's `items_lookup_and_delete_batch` allocates key and value arrays for the map's whole
capacity on every call (16 MiB per drain for a 16,384-entry map of 1 KiB stacks) and returns
ctypes objects one by one. This drains in fixed chunks into buffers allocated once and hands
back raw bytes, which the caller decodes with `struct`/`memoryview` (BPF_MAP_LOOKUP_AND_DELETE
_BATCH, Linux 5.6+; for hash maps the batch token is a bucket index, kernel/bpf/hashtab.c).
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator


class BatchDrainer:
    """Empties one hash map per `drain()`, yielding (keys, values) chunks as bytes."""

    def __init__(self, lib: ctypes.CDLL, map_fd: int, key_size: int, value_size: int,
                 chunk: int) -> None:
        self._lib = lib
        self._fd = map_fd
        self.key_size = key_size
        self.value_size = value_size
        self._chunk = chunk
        self._keys = ctypes.create_string_buffer(key_size * chunk)
        self._values = ctypes.create_string_buffer(value_size * chunk)
        self.batch_supported = True

    def drain(self) -> Iterator[tuple[bytes, bytes, int]]:
        """Chunks of (keys, values, count) until the map is empty."""
        token_in = ctypes.c_uint32(0)
        token_out = ctypes.c_uint32(0)
        first = True
        while True:
            count = ctypes.c_uint32(self._chunk)
            res = self._lib.bpf_lookup_and_delete_batch(
                self._fd, None if first else ctypes.byref(token_in), ctypes.byref(token_out),
                self._keys, self._values, ctypes.byref(count))
            err = ctypes.get_errno() if res != 0 else 0
            n = count.value
            if n:
                # string_at copies the n entries only; `.raw` would copy the whole buffer
                # (1 MiB for 1,024 stacks) before the slice
                yield (ctypes.string_at(self._keys, n * self.key_size),
                       ctypes.string_at(self._values, n * self.value_size), n)
            if res != 0:
                if err in (errno.ENOENT, 0):
                    return  # the whole map was walked
                name = errno.errorcode.get(err, str(err))
                raise OSError(err, f"BPF_MAP_LOOKUP_AND_DELETE_BATCH failed: {name}")
            token_in.value = token_out.value
            first = False
