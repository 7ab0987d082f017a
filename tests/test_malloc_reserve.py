"""common.malloc_reserve: a C heap block held between two computations of the same size,
freed during each one (identity/hashers.py keeps Argon2id's 19 MiB this way)."""

from __future__ import annotations

import sys

import pytest

from common import malloc_reserve
from common.malloc_reserve import MallocReserve
from identity import hashers

needs_libc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ctypes and libc: Linux")


@needs_libc
def test_the_reserve_is_taken_after_the_first_use_and_freed_during_each():
    reserve = MallocReserve(1 << 20)
    assert reserve.enabled and not reserve.held
    with reserve.released():
        assert not reserve.held
    assert reserve.held
    with reserve.released():
        assert not reserve.held
    assert reserve.held


@needs_libc
def test_the_reserve_is_taken_back_when_the_computation_raises():
    reserve = MallocReserve(1 << 20)
    with pytest.raises(ZeroDivisionError), reserve.released():
        1 / 0  # noqa: B018
    assert reserve.held


@needs_libc
def test_the_computation_gets_the_reserved_block_back():
    # The very chunk: a malloc of the same size right after the reserve is freed. (The first
    # block of that size is an mmap, after which glibc serves that size from the heap: as in
    # a worker, whose first Argon2id computation comes before the reserve.)
    libc = malloc_reserve._libc()
    assert libc is not None
    reserve = MallocReserve(4 << 20)
    libc.free(libc.malloc(reserve.size))
    for _ in range(2):
        with reserve.released():
            pass
    for _ in range(3):
        block = reserve._block
        with reserve.released():
            again = libc.malloc(reserve.size)
            assert again == block
            libc.free(again)


def test_without_a_c_library_nothing_is_held(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(malloc_reserve, "_libc", lambda: None)
    reserve = MallocReserve(1 << 20)
    assert not reserve.enabled
    with reserve.released():
        pass
    assert not reserve.held


def test_an_allocation_failure_leaves_no_reserve(monkeypatch: pytest.MonkeyPatch):
    class NoMemory:
        @staticmethod
        def malloc(size: int) -> None:
            return None

        @staticmethod
        def free(block: int) -> None:  # pragma: no cover - nothing to free
            raise AssertionError("nothing was allocated")

    monkeypatch.setattr(malloc_reserve, "_libc", lambda: NoMemory())
    reserve = MallocReserve(1 << 20)
    with reserve.released():
        pass
    assert not reserve.held
    with reserve.released():
        pass
    assert not reserve.held


def test_argon2id_computes_with_the_reserve_released(monkeypatch: pytest.MonkeyPatch):
    # Creating and checking a hash both run with the reserve freed, under the one slot.
    seen: list[tuple[bool, bool]] = []
    argon2 = hashers.Argon2idHasher()._load_library()
    real_hash, real_verify = argon2.low_level.hash_secret, argon2.PasswordHasher.verify

    def hash_secret(*args, **kwargs):
        seen.append((hashers._ARGON2_RESERVE.held, hashers._ARGON2_SLOT.locked()))
        return real_hash(*args, **kwargs)

    def verify(self, *args, **kwargs):
        seen.append((hashers._ARGON2_RESERVE.held, hashers._ARGON2_SLOT.locked()))
        return real_verify(self, *args, **kwargs)

    monkeypatch.setattr(argon2.low_level, "hash_secret", hash_secret)
    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)
    hasher = hashers.FastTestArgon2idHasher()
    encoded = hasher.encode("correct horse battery", hasher.salt())
    assert hasher.verify("correct horse battery", encoded)
    assert not hasher.verify("wrong horse battery", encoded)
    assert seen == [(False, True)] * 3
    assert hashers._ARGON2_RESERVE.held == hashers._ARGON2_RESERVE.enabled
