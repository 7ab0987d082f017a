"""Merkle tree hashing, proofs and proof verification as in RFC 9162 (Certificate Transparency v2).

Pure Python, standard library only, no Django: a data-protection officer or an auditor can
copy this one file and check our receipts and proofs without installing the service.

- leaf hash   = SHA-256(0x00 || entry)
- node hash   = SHA-256(0x01 || left || right)
- MTH({})     = SHA-256("")
- MTH(D[n])   = node(MTH(D[0:k]), MTH(D[k:n])) with k the largest power of two < n (§2.1.1)

Appending is incremental: the *frontier* (the roots of the perfect subtrees that make up
the tree, left to right, one per bit set in the size) is enough to add a leaf in O(log n)
and to compute the root. Proofs (§2.1.3, §2.1.4) are expressed first as the list of leaf
ranges whose subtree hashes they need, so that a storage layer can fetch exactly those
(each range decomposes into at most log n stored perfect subtrees).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# --- Incremental append ------------------------------------------------------------------


def frontier_append(
    frontier: Sequence[bytes], size: int, leaf: bytes
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Add `leaf` (a leaf hash) to a tree of `size` leaves summarised by `frontier`.

    Returns the new frontier and the perfect subtrees completed by this append, as
    (level, index, hash) with level >= 1 (level 0 is the leaf itself, index = position
    of the subtree among those of its level).
    """
    if len(frontier) != size.bit_count():
        raise ValueError("frontier does not match the tree size")
    stack = list(frontier)
    completed: list[tuple[int, int, bytes]] = []
    current = leaf
    level = 0
    position = size
    while position & 1:
        current = node_hash(stack.pop(), current)
        position >>= 1
        level += 1
        completed.append((level, position, current))
    stack.append(current)
    return stack, completed


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for left in reversed(frontier[:-1]):
        root = node_hash(left, root)
    return root


def root_from_leaves(leaves: Iterable[bytes]) -> bytes:
    """MTH of a list of leaf hashes, computed incrementally."""
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        frontier, _ = frontier_append(frontier, size, leaf)
    return frontier_root(frontier)


# --- Ranges and their hashes -------------------------------------------------------------


def perfect_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """The stored perfect subtrees (level, index) whose hashes make up MTH(D[lo:hi]).

    Only valid for the ranges RFC 9162's recursion produces (lo aligned on the largest
    power of two below hi - lo, or hi - lo itself a power of two aligned on lo).
    """
    out: list[tuple[int, int]] = []
    _collect_perfect(lo, hi, out)
    return out


def _collect_perfect(lo: int, hi: int, out: list[tuple[int, int]]) -> None:
    n = hi - lo
    if n <= 0:
        raise ValueError("empty range")
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        out.append((level, lo >> level))
        return
    k = _largest_power_of_two_below(n)
    _collect_perfect(lo, lo + k, out)
    _collect_perfect(lo + k, hi, out)


def range_hash(lo: int, hi: int, perfect: Callable[[int, int], bytes]) -> bytes:
    """MTH(D[lo:hi]) from the hashes of stored perfect subtrees, `perfect(level, index)`."""
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        return perfect(level, lo >> level)
    k = _largest_power_of_two_below(n)
    return node_hash(range_hash(lo, lo + k, perfect), range_hash(lo + k, hi, perfect))


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges of PATH(index, D[size]) (RFC 9162 §2.1.3.1), bottom-up."""
    if not 0 <= index < size:
        raise ValueError("leaf index out of range for this tree size")
    ranges: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    # Walk down from the root, then reverse: the proof lists the deepest sibling first.
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if m < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m = lo + k, m - k
    ranges.reverse()
    return ranges


def consistency_proof_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Leaf ranges of PROOF(first, D[second]) (RFC 9162 §2.1.4.1), in proof order.

    Empty for first == 0 or first == second (nothing to prove).
    """
    if not 0 <= first <= second:
        raise ValueError("consistency proof needs 0 <= first <= second")
    if first == 0 or first == second:
        return []
    ranges: list[tuple[int, int]] = []
    _subproof(first, 0, second, True, ranges)
    return ranges


def _subproof(m: int, lo: int, hi: int, complete: bool, out: list[tuple[int, int]]) -> None:
    n = hi - lo
    if m == n:
        if not complete:
            out.append((lo, hi))
        return
    k = _largest_power_of_two_below(n)
    if m <= k:
        _subproof(m, lo, lo + k, complete, out)
        out.append((lo + k, hi))
    else:
        _subproof(m - k, lo + k, hi, False, out)
        out.append((lo, lo + k))


def inclusion_proof(index: int, size: int, perfect: Callable[[int, int], bytes]) -> list[bytes]:
    return [range_hash(lo, hi, perfect) for lo, hi in inclusion_proof_ranges(index, size)]


def consistency_proof(first: int, second: int, perfect: Callable[[int, int], bytes]) -> list[bytes]:
    return [range_hash(lo, hi, perfect) for lo, hi in consistency_proof_ranges(first, second)]


def leaves_lookup(leaves: Sequence[bytes]) -> Callable[[int, int], bytes]:
    """A `perfect(level, index)` over an in-memory list of leaf hashes (for tests and tools)."""

    def perfect(level: int, index: int) -> bytes:
        width = 1 << level
        chunk = leaves[index * width : (index + 1) * width]
        if len(chunk) != width:
            raise ValueError("subtree outside the tree")
        return root_from_leaves(chunk)

    return perfect


# --- Verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ----------------------------------------


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True when `proof` shows that leaf hash `leaf` is at `index` in the tree (`size`, `root`)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != HASH_SIZE or sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when `proof` shows the tree (`second`, `second_root`) extends (`first`, `first_root`)."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        # Every tree extends the empty tree; RFC 9162 defines no proof for it.
        return not proof and first_root == EMPTY_ROOT
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
