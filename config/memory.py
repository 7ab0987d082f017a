"""One malloc arena per web worker (glibc), so that Argon2id's memory goes back after each hash.

A password check (identity.hashers, m=19 MiB) allocates 19 MiB with malloc. On glibc each
thread that allocates gets its own arena, and a freed block of that size stays in it: with
four server threads hashing, a worker kept ~80 MiB more after a sign-in burst (bench/oidc.py:
126 → 210 MiB). With a single arena, and one Argon2id computation at a time
(identity.hashers), the one block is reused from check to check; measured CPU per hash is
unchanged, whereas forcing such blocks onto mmap (M_MMAP_THRESHOLD) made each hash ~60 %
dearer. Python's own small objects do not go through these arenas (pymalloc), and
the server's threads hold the GIL for most of their work, so one arena costs no contention
worth measuring.

`MALLOC_ARENA_MAX` in the environment, when set, wins: operators may choose otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_ARENA_MAX = -8  # glibc's <malloc.h>


def limit_malloc_arenas(count: int = 1) -> bool:
    """Ask glibc for at most `count` arenas; False when not on glibc or left to the environment."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(M_ARENA_MAX, count))
