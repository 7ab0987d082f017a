"""The Merkle log stored in the database: leaf entries, appends, proofs, tree-head signatures.

Internal to the consent app: other apps go through `consent.services` / `consent.selectors`.

Leaf entry. The leaf hash of event #seq is SHA-256(0x00 || entry) where `entry` is the
canonical JSON (UTF-8, keys sorted, no spaces) of the row's non-secret columns, the
encrypted details included as base64 — see `ENTRY_COLUMNS` and `entry_bytes`. Everything
that enters the hash is a plain column of `consent_ledgerevent`, so `verify_ledger` can
recompute each leaf from the row alone.

Appends are serialised by a row lock on the single `LedgerHead` row (SELECT ... FOR
UPDATE on PostgreSQL; SQLite transactions are IMMEDIATE, one writer at a time), which
holds the size, the root and the frontier (right edge of the tree) so an append costs
O(log n) hashes and at most log n + 1 inserts.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from jwcrypto import jws
from jwcrypto.common import JWException, json_encode

from consent import merkle
from consent.models import LedgerEvent, LedgerHead, MerkleNode, TreeHead

ENTRY_VERSION = 1
# Columns of consent_ledgerevent that make up the leaf entry, in `values_list` order.
ENTRY_COLUMNS = (
    "id",
    "seq",
    "event_type",
    "subject_id",
    "purpose_code",
    "notice_id",
    "notice_version",
    "notice_sha256",
    "collection_method",
    "actor_type",
    "actor_id",
    "partner_client_id",
    "occurred_at",
    "valid_until",
    "linked_from",
    "details_ciphertext",
)
TREE_HEAD_TYPE = "consent-sth+jwt"


def log_id() -> str:
    return f"{settings.ISSUER}/consent-ledger"


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    ciphertext = row["details_ciphertext"]
    linked_from = row["linked_from"]
    notice_id = row["notice_id"]
    return {
        "v": ENTRY_VERSION,
        "id": str(row["id"]),
        "seq": int(row["seq"]),
        "type": row["event_type"],
        "subject": str(row["subject_id"]),
        "purpose": row["purpose_code"],
        "notice": None
        if notice_id is None
        else {"id": int(notice_id), "version": row["notice_version"], "sha256": row["notice_sha256"]},
        "method": row["collection_method"],
        "actor": {"type": row["actor_type"], "id": row["actor_id"]},
        "partner": row["partner_client_id"] or None,
        "at": format_time(row["occurred_at"]),
        "valid_until": format_time(row["valid_until"]),
        "linked_from": str(linked_from) if linked_from else None,
        "details": base64.b64encode(bytes(ciphertext)).decode() if ciphertext else None,
    }


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_bytes(row: Mapping[str, Any]) -> bytes:
    return canonical_json(entry_dict(row))


def event_row(event: LedgerEvent) -> dict[str, Any]:
    return {column: getattr(event, column) for column in ENTRY_COLUMNS}


def event_entry_bytes(event: LedgerEvent) -> bytes:
    return entry_bytes(event_row(event))


# --- Head and appends ------------------------------------------------------------------------


def _split_frontier(blob: bytes) -> list[bytes]:
    blob = bytes(blob)
    return [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]


def lock_head() -> LedgerHead:
    """The head row, locked until the end of the current transaction."""
    try:
        return LedgerHead.objects.select_for_update().get(pk=1)
    except LedgerHead.DoesNotExist:
        # Normally created by migration 0003; a flushed test database lacks it.
        LedgerHead.objects.bulk_create(
            [LedgerHead(pk=1, size=0, root_hash=merkle.EMPTY_ROOT, frontier=b"")], ignore_conflicts=True
        )
        return LedgerHead.objects.select_for_update().get(pk=1)


def read_head() -> LedgerHead:
    head = LedgerHead.objects.filter(pk=1).first()
    return head or LedgerHead(pk=1, size=0, root_hash=merkle.EMPTY_ROOT, frontier=b"")


def append(head: LedgerHead, event: LedgerEvent) -> LedgerEvent:
    """Give `event` the next sequence number, hash it, insert it and advance the head.

    The caller holds the head lock (`lock_head()`) inside a transaction.
    """
    size = int(head.size)
    event.seq = size
    event.leaf_hash = merkle.leaf_hash(event_entry_bytes(event))
    frontier, completed = merkle.frontier_append(_split_frontier(head.frontier), size, event.leaf_hash)
    event.save()
    if completed:
        MerkleNode.objects.bulk_create(
            [MerkleNode(level=level, index=index, hash=digest) for level, index, digest in completed]
        )
    head.size = size + 1
    head.frontier = b"".join(frontier)
    head.root_hash = merkle.frontier_root(frontier)
    head.updated_at = timezone.now()
    head.save(update_fields=["size", "frontier", "root_hash", "updated_at"])
    return event


# --- Proofs from stored hashes ---------------------------------------------------------------


class ProofError(ValueError):
    """A proof was asked for a size or index the ledger does not have."""


def _perfect_hashes(keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    keys = set(keys)
    found: dict[tuple[int, int], bytes] = {}
    leaves = [index for level, index in keys if level == 0]
    if leaves:
        for seq, digest in LedgerEvent.objects.filter(seq__in=leaves).values_list("seq", "leaf_hash"):
            found[(0, seq)] = bytes(digest)
    by_level: dict[int, list[int]] = {}
    for level, index in keys:
        if level:
            by_level.setdefault(level, []).append(index)
    if by_level:
        condition = Q()
        for level, indexes in by_level.items():
            condition |= Q(level=level, index__in=indexes)
        for level, index, digest in MerkleNode.objects.filter(condition).values_list(
            "level", "index", "hash"
        ):
            found[(level, index)] = bytes(digest)
    missing = keys - found.keys()
    if missing:
        raise ProofError(f"ledger storage lacks subtree hashes {sorted(missing)[:5]}")
    return found


def _hashes_for_ranges(ranges: list[tuple[int, int]]) -> list[bytes]:
    keys = [key for lo, hi in ranges for key in merkle.perfect_subtrees(lo, hi)]
    found = _perfect_hashes(keys)
    return [merkle.range_hash(lo, hi, lambda level, index: found[(level, index)]) for lo, hi in ranges]


def _check_size(size: int) -> None:
    current = int(read_head().size)
    if not 0 <= size <= current:
        raise ProofError(f"tree size {size} is outside the ledger (size {current})")


def inclusion_proof(leaf_index: int, tree_size: int) -> list[bytes]:
    _check_size(tree_size)
    if not 0 <= leaf_index < tree_size:
        raise ProofError(f"leaf {leaf_index} is not in a tree of size {tree_size}")
    return _hashes_for_ranges(merkle.inclusion_proof_ranges(leaf_index, tree_size))


def consistency_proof(first: int, second: int) -> list[bytes]:
    _check_size(second)
    if not 0 <= first <= second:
        raise ProofError("a consistency proof needs 0 <= first <= second")
    return _hashes_for_ranges(merkle.consistency_proof_ranges(first, second))


def root_at(size: int) -> bytes:
    """MTH of the first `size` leaves, from stored hashes (O(log n) reads)."""
    _check_size(size)
    if size == 0:
        return merkle.EMPTY_ROOT
    return _hashes_for_ranges([(0, size)])[0]


# --- Signed tree heads -----------------------------------------------------------------------


def tree_head_payload(*, tree_size: int, root_hash: bytes, timestamp: datetime) -> dict[str, Any]:
    return {
        "iss": settings.ISSUER,
        "log_id": log_id(),
        "tree_size": int(tree_size),
        "root_hash": bytes(root_hash).hex(),
        "timestamp": int(timestamp.timestamp() * 1000),
    }


def sign_compact(payload: dict[str, Any], *, typ: str) -> tuple[str, str]:
    """JWS compact (ES256) with the service's active ES256 key; returns (jws, kid)."""
    from identity.keys import active_signing_key

    key = active_signing_key("ES256")
    token = jws.JWS(canonical_json(payload))
    token.add_signature(key.jwk, None, json_encode({"alg": "ES256", "kid": key.kid, "typ": typ}))
    return token.serialize(compact=True), key.kid


class SignatureInvalid(ValueError):
    pass


def verify_compact(token: str, *, typ: str) -> tuple[dict[str, Any], str]:
    """Check a JWS against the published keys; returns (payload, kid) or raises SignatureInvalid."""
    from identity.keys import verification_key

    try:
        parsed = jws.JWS()
        parsed.deserialize(token)
        header = parsed.jose_header
    except (JWException, ValueError, TypeError) as exc:
        raise SignatureInvalid("not a JWS compact serialisation") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256" or header.get("typ") != typ:
        raise SignatureInvalid("unexpected JWS header")
    kid = str(header.get("kid") or "")
    key = verification_key(kid) if kid else None
    if key is None:
        raise SignatureInvalid("signing key is not (or no longer) published")
    try:
        parsed.verify(key, alg="ES256")
    except (JWException, ValueError) as exc:
        raise SignatureInvalid("signature does not verify") from exc
    try:
        payload = json.loads(parsed.payload)
    except ValueError as exc:
        raise SignatureInvalid("payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise SignatureInvalid("payload is not a JSON object")
    return payload, kid


def tree_head_create() -> TreeHead:
    head = read_head()
    now = timezone.now()
    # The stored timestamp is truncated to the millisecond signed in the payload.
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    payload = tree_head_payload(tree_size=int(head.size), root_hash=bytes(head.root_hash), timestamp=now)
    signature, kid = sign_compact(payload, typ=TREE_HEAD_TYPE)
    return TreeHead.objects.create(
        tree_size=int(head.size), root_hash=bytes(head.root_hash), timestamp=now, kid=kid, signature=signature
    )


def tree_head_check(head: TreeHead) -> str:
    """'' when the signature verifies and matches the row, else the reason it does not."""
    try:
        payload, kid = verify_compact(head.signature, typ=TREE_HEAD_TYPE)
    except SignatureInvalid as exc:
        return str(exc)
    expected = tree_head_payload(
        tree_size=head.tree_size, root_hash=bytes(head.root_hash), timestamp=head.timestamp
    )
    fields = ("tree_size", "root_hash", "timestamp")
    if any(payload.get(name) != expected[name] for name in fields) or kid != head.kid:
        return "signed content differs from the stored tree head"
    return ""


def new_event_id() -> uuid.UUID:
    return uuid.uuid4()
