"""A C heap block kept aside between uses of a large, always-same-size allocation.

Argon2id allocates its memory (19 MiB at our cost) with malloc at each computation and frees
it at the end (identity/hashers.py). With one malloc arena (config/memory.py) that block
comes from the main heap; once freed, it is a free chunk like any other, and the small
allocations of the server's other threads are cut from it whenever nothing smaller fits.
The next computation then no longer finds 19 MiB in one piece and extends the heap: a worker
ends up holding two such blocks, or more, depending on luck (bench/README.md, "Worker
memory": 147 → 166 MiB at the last sign-in of a run).

`MallocReserve` narrows that gap: between computations it holds a block of exactly the same
size, so no other allocation can take it, and it frees it just before the computation,
whose malloc of that size then gets the same chunk back (an exact fit). The pages stay
resident and already faulted in, as they were before: the CPU per computation is unchanged
(unlike forcing such blocks onto mmap, which faults in and zeroes fresh pages at every
computation). The block is still free for a moment around each computation (Argon2 frees
it inside its C call, while the other threads hold the GIL): when another allocation took
part of it then, the reserve comes back at another address, and `malloc_trim` gives the old
block's free pages back to the system, once, instead of the worker keeping both.

The reserve is never read or written (malloc does not touch the pages; it holds address
space, not data), and nothing is done where the C library cannot be loaded. Callers
serialise their uses (`released()` is not reentrant): identity/hashers.py holds its lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _libc() -> Any | None:
    """malloc and free of the C library, called with the GIL held (PyDLL): no other Python
    thread allocates between our free and the computation's malloc."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.PyDLL(name)
        malloc, free = libc.malloc, libc.free
    except (OSError, AttributeError):
        return None
    malloc.restype = ctypes.c_void_p
    malloc.argtypes = [ctypes.c_size_t]
    free.restype = None
    free.argtypes = [ctypes.c_void_p]
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim.restype = ctypes.c_int
        trim.argtypes = [ctypes.c_size_t]
    return libc


class MallocReserve:
    """Holds `size` bytes of C heap between the computations that need exactly that much."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._libc = _libc()
        self._block: int | None = None
        # glibc's malloc_trim: gives the free pages inside the heap back to the system.
        self._trim = getattr(self._libc, "malloc_trim", None)

    @property
    def enabled(self) -> bool:
        return self._libc is not None

    @property
    def held(self) -> bool:
        return self._block is not None

    @contextmanager
    def released(self) -> Iterator[None]:
        """Frees the reserve for the duration of the block, then takes it back (even when
        the block raised). The first use only takes it afterwards."""
        libc = self._libc
        if libc is None:
            yield
            return
        previous, self._block = self._block, None
        if previous is not None:
            libc.free(previous)
        try:
            yield
        finally:
            # NULL (out of memory) leaves no reserve: the next computation allocates as usual.
            block = libc.malloc(self.size) or None
            self._block = block
            if previous is not None and block is not None and block != previous and self._trim is not None:
                # Another thread took part of the freed block in the short moments when it was
                # free (the computation runs without the GIL): the block now lives elsewhere,
                # and the old one's pages, free but resident, are given back to the system.
                self._trim(0)
