"""RFC 9162 Merkle proofs, checked against an independent naive implementation.

The reference functions below follow the RFC's recursive definitions literally
(§2.1.1 MTH, §2.1.3.1 PATH, §2.1.4.1 PROOF/SUBPROOF) and share no code with
consent/merkle.py except hashlib.
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from consent import merkle


def ref_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: list[bytes]) -> bytes:
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return ref_leaf(entries[0])
    k = ref_k(n)
    return ref_node(ref_mth(entries[:k]), ref_mth(entries[k:]))


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    n = len(entries)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if b else [ref_mth(entries)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, entries[:k], b), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_proof(m: int, entries: list[bytes]) -> list[bytes]:
    return ref_subproof(m, entries, True)


entries_strategy = st.lists(st.binary(min_size=0, max_size=8), min_size=1, max_size=70)


def flip(digest: bytes) -> bytes:
    return bytes([digest[0] ^ 1]) + digest[1:]


@settings(max_examples=300, deadline=None)
@given(entries=entries_strategy)
def test_incremental_root_equals_the_recursive_definition(entries: list[bytes]) -> None:
    leaves = [merkle.leaf_hash(e) for e in entries]
    assert merkle.root_from_leaves(leaves) == ref_mth(entries)
    # Every prefix too: the frontier gives the root of each intermediate tree.
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        frontier, _ = merkle.frontier_append(frontier, size, leaf)
        assert merkle.frontier_root(frontier) == ref_mth(entries[: size + 1])


def test_empty_tree_root() -> None:
    assert merkle.root_from_leaves([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT


@settings(max_examples=300, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_inclusion_proofs_match_the_rfc_and_verify(entries: list[bytes], data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(e) for e in entries]
    size = data.draw(st.integers(min_value=1, max_value=len(entries)), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    root = ref_mth(entries[:size])
    proof = merkle.inclusion_proof(index, size, merkle.leaves_lookup(leaves))
    assert proof == ref_path(index, entries[:size])
    assert merkle.verify_inclusion(leaves[index], index, size, proof, root)

    # Wrong leaf, wrong root, wrong index, wrong size, altered or truncated proof: refused.
    assert not merkle.verify_inclusion(flip(leaves[index]), index, size, proof, root)
    assert not merkle.verify_inclusion(leaves[index], index, size, proof, flip(root))
    if proof:
        assert not merkle.verify_inclusion(leaves[index], index, size, [flip(proof[0]), *proof[1:]], root)
        assert not merkle.verify_inclusion(leaves[index], index, size, proof[:-1], root)
    assert not merkle.verify_inclusion(leaves[index], index, size, [*proof, root], root)
    other_index = data.draw(st.integers(min_value=0, max_value=size - 1), label="other_index")
    if entries[other_index] != entries[index]:
        assert not merkle.verify_inclusion(leaves[index], other_index, size, proof, root)
    assert not merkle.verify_inclusion(leaves[index], index, index, proof, root)  # size <= index
    other_size = data.draw(st.integers(min_value=index + 1, max_value=len(entries)), label="other_size")
    if other_size != size:
        assert not merkle.verify_inclusion(
            leaves[index], index, other_size, proof, ref_mth(entries[:other_size])
        )


@settings(max_examples=300, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_consistency_proofs_match_the_rfc_and_verify(entries: list[bytes], data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(e) for e in entries]
    second = data.draw(st.integers(min_value=1, max_value=len(entries)), label="second")
    first = data.draw(st.integers(min_value=0, max_value=second), label="first")
    first_root, second_root = ref_mth(entries[:first]), ref_mth(entries[:second])
    proof = merkle.consistency_proof(first, second, merkle.leaves_lookup(leaves))
    if 0 < first < second:
        assert proof == ref_proof(first, entries[:second])
    else:
        assert proof == []
    assert merkle.verify_consistency(first, second, first_root, second_root, proof)

    assert not merkle.verify_consistency(first, second, flip(first_root), second_root, proof)
    if first > 0:
        # (Every tree extends the empty one: with first == 0 there is nothing to bind.)
        assert not merkle.verify_consistency(first, second, first_root, flip(second_root), proof)
    if proof:
        assert not merkle.verify_consistency(
            first, second, first_root, second_root, [flip(proof[0]), *proof[1:]]
        )
        assert not merkle.verify_consistency(first, second, first_root, second_root, proof[:-1])
    # (A claim "size == second" with the second root itself is trivially consistent.)
    other_first = data.draw(st.integers(min_value=1, max_value=max(1, second - 1)), label="other_first")
    if other_first != first and other_first < second:
        assert not merkle.verify_consistency(
            other_first, second, ref_mth(entries[:other_first]), second_root, proof
        )
    assert not merkle.verify_consistency(second + 1, second, first_root, second_root, proof)
    # A tree that does not extend the first one (its first leaf replaced) is refused.
    if first > 0:
        forged = [b"forged" + entries[0], *entries[1:]]
        assert not merkle.verify_consistency(first, second, first_root, ref_mth(forged[:second]), proof)


def test_stored_subtrees_reproduce_every_range_hash() -> None:
    entries = [bytes([i]) for i in range(37)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    frontier: list[bytes] = []
    stored: dict[tuple[int, int], bytes] = {(0, i): leaf for i, leaf in enumerate(leaves)}
    for size, leaf in enumerate(leaves):
        frontier, completed = merkle.frontier_append(frontier, size, leaf)
        stored.update({(level, index): digest for level, index, digest in completed})
    # Each completed node is the MTH of its aligned block of leaves.
    for (level, index), digest in stored.items():
        width = 1 << level
        assert digest == ref_mth(entries[index * width : (index + 1) * width])
    for size in range(1, 38):
        assert merkle.range_hash(0, size, lambda level, index: stored[(level, index)]) == ref_mth(
            entries[:size]
        )
