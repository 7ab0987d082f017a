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


class FakeLibc:
    """malloc hands out the addresses it is given, in order; free and malloc_trim are recorded."""

    def __init__(self, addresses: list[int | None]) -> None:
        self.addresses = addresses
        self.calls: list[tuple[str, int | None]] = []

    def malloc(self, size: int) -> int | None:
        address = self.addresses.pop(0)
        self.calls.append(("malloc", address))
        return address

    def free(self, block: int) -> None:
        self.calls.append(("free", block))

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("trim", pad))
        return 1


def test_an_allocation_failure_leaves_no_reserve(monkeypatch: pytest.MonkeyPatch):
    libc = FakeLibc([None, None])
    monkeypatch.setattr(malloc_reserve, "_libc", lambda: libc)
    reserve = MallocReserve(1 << 20)
    with reserve.released():
        pass
    assert not reserve.held
    with reserve.released():
        pass
    assert not reserve.held
    assert libc.calls == [("malloc", None), ("malloc", None)]


def test_the_heap_is_trimmed_only_when_the_block_had_to_move(monkeypatch: pytest.MonkeyPatch):
    # Same address again: the computation had the block back, nothing to give back. Another
    # address: part of the old block was taken while it was free; its free pages go back.
    libc = FakeLibc([0x1000, 0x1000, 0x9000, 0x9000])
    monkeypatch.setattr(malloc_reserve, "_libc", lambda: libc)
    reserve = MallocReserve(1 << 20)
    for _ in range(4):
        with reserve.released():
            pass
    assert libc.calls == [
        ("malloc", 0x1000),
        ("free", 0x1000),
        ("malloc", 0x1000),
        ("free", 0x1000),
        ("malloc", 0x9000),
        ("trim", 0),
        ("free", 0x9000),
        ("malloc", 0x9000),
    ]


@needs_libc
def test_trimming_the_real_heap_is_harmless():
    reserve = MallocReserve(1 << 20)
    if reserve._trim is None:
        pytest.skip("no malloc_trim (not glibc)")
    assert reserve._trim(0) in (0, 1)


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
