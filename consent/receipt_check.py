"""Public verification of a consent receipt and, optionally, of its inclusion proof.

Anyone may ask (the page /recus/verifier/ and POST /consent/api/v1/receipts/verify): no
account, nothing written, nothing read but the published keys. `receipt_check(receipt, proof)`

1. checks the receipt (`consent.receipts.receipt_verify`: ES256 signature by a key published
   at /jwks.json, `typ` consent-receipt+jwt, the ledger entry hashes to its leaf hash) and
   reads what it states (event, purpose, type, time, notice version, leaf index);
2. given a proof (the JSON `consent.selectors.event_proof` gives: `signed_tree_head`,
   `inclusion_path`, and copies of `leaf_index`, `leaf_hash`, `log_id`), checks the signed tree
   head it names (signature, `typ` consent-sth+jwt, same log) and folds the audit path from the
   receipt's leaf to the signed root (RFC 9162, `consent.merkle.verify_inclusion`). The size
   and root used are the signed ones, never the proof's unsigned copies.

Input that is not a receipt at all raises `CheckInputError` (the callers answer 400); a
receipt or proof that fails a check is an answer (`valid` False with a reason code).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from common import ratelimit
from consent import ledger, merkle
from consent.receipts import ReceiptInvalid, receipt_verify

MAX_RECEIPT_CHARS = 32 * 1024
MAX_PROOF_CHARS = 32 * 1024
# A tree of fewer than 2**64 leaves has an audit path of at most 64 hashes.
MAX_PATH = 64
_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$")
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class CheckInputError(ValueError):
    """Not something to verify. `code`: "receipt_malformed", "receipt_too_large",
    "proof_malformed", "proof_too_large"."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ReceiptStatement:
    """What a receipt with a valid signature states."""

    event_id: str
    purpose_code: str
    purpose_title: str
    event_type: str
    occurred_at: datetime | None
    valid_until: str | None
    collection_method: str
    notice_version: int | None
    log_id: str
    leaf_index: int | None
    leaf_hash: str
    kid: str


@dataclass(frozen=True)
class InclusionCheck:
    verified: bool
    # "" when verified, else: "tree_head_invalid", "other_log", "other_leaf", "path_invalid".
    reason: str
    tree_size: int | None = None
    root_hash: str = ""
    tree_head_time: datetime | None = None


@dataclass(frozen=True)
class ReceiptCheck:
    signature_valid: bool
    # "" when valid, else a `ReceiptInvalid` code: "header", "unknown_key", "signature",
    # "payload", "entry".
    reason: str
    statement: ReceiptStatement | None
    inclusion: InclusionCheck | None

    @property
    def valid(self) -> bool:
        return self.signature_valid and (self.inclusion is None or self.inclusion.verified)


def parse_receipt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CheckInputError("paste the receipt: the text of the .jws file", "receipt_malformed")
    if len(value) > MAX_RECEIPT_CHARS:
        raise CheckInputError(f"a receipt is at most {MAX_RECEIPT_CHARS} characters", "receipt_too_large")
    token = "".join(value.split())
    if not _JWS.match(token):
        raise CheckInputError("not a JWS compact serialisation (three base64url parts)", "receipt_malformed")
    return token


def parse_proof(value: Any) -> dict[str, Any] | None:
    """The proof as a JSON object (given as one, or as its text); None when absent or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        if len(value) > MAX_PROOF_CHARS:
            raise CheckInputError(f"a proof is at most {MAX_PROOF_CHARS} characters", "proof_too_large")
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise CheckInputError("the proof is not JSON", "proof_malformed") from exc
    if not isinstance(value, dict):
        raise CheckInputError("the proof must be a JSON object", "proof_malformed")
    path = value.get("inclusion_path")
    if (
        not isinstance(value.get("signed_tree_head"), str)
        or not isinstance(path, list)
        or len(path) > MAX_PATH
        or not all(isinstance(digest, str) and _HEX_DIGEST.match(digest) for digest in path)
    ):
        raise CheckInputError(
            "the proof needs signed_tree_head (a JWS) and inclusion_path (at most 64 SHA-256 hex digests)",
            "proof_malformed",
        )
    return value


def _dig(payload: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(payload, dict) and isinstance(key, str):
            payload = payload.get(key)
        elif isinstance(payload, list) and isinstance(key, int) and len(payload) > key:
            payload = payload[key]
        else:
            return None
    return payload


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _statement(payload: dict[str, Any], kid: str) -> ReceiptStatement:
    timestamp = _int(_dig(payload, "kantara", "consentTimestamp"))
    try:
        occurred_at = datetime.fromtimestamp(timestamp, tz=UTC) if timestamp is not None else None
    except (OverflowError, OSError, ValueError):
        occurred_at = None
    purpose = _dig(payload, "iso27560", "processing", "purposes", 0)
    event = _dig(payload, "iso27560", "event", 0)
    return ReceiptStatement(
        event_id=_text(payload.get("jti")),
        purpose_code=_text(_dig(purpose, "purpose_id")),
        purpose_title=_text(_dig(purpose, "purpose")),
        event_type=_text(_dig(event, "event_type")),
        occurred_at=occurred_at,
        valid_until=_text(_dig(event, "validity_duration")) or None,
        collection_method=_text(_dig(payload, "kantara", "collectionMethod")),
        notice_version=_int(_dig(payload, "iso27560", "processing", "privacy_notice", "version")),
        log_id=_text(_dig(payload, "ledger", "log_id")),
        leaf_index=_int(_dig(payload, "ledger", "leaf_index")),
        leaf_hash=_text(_dig(payload, "ledger", "leaf_hash")),
        kid=kid,
    )


def _inclusion(statement: ReceiptStatement, proof: dict[str, Any]) -> InclusionCheck:
    try:
        head, _kid = ledger.verify_compact(proof["signed_tree_head"], typ=ledger.TREE_HEAD_TYPE)
    except ledger.SignatureInvalid:
        return InclusionCheck(False, "tree_head_invalid")
    size, root = _int(head.get("tree_size")), _text(head.get("root_hash"))
    millis = _int(head.get("timestamp"))
    if size is None or size < 1 or not _HEX_DIGEST.match(root):
        return InclusionCheck(False, "tree_head_invalid")
    try:
        signed_at = datetime.fromtimestamp(millis / 1000, tz=UTC) if millis is not None else None
    except (OverflowError, OSError, ValueError):
        signed_at = None

    def found(verified: bool, reason: str) -> InclusionCheck:
        return InclusionCheck(verified, reason, tree_size=size, root_hash=root, tree_head_time=signed_at)

    if head.get("log_id") != statement.log_id:
        return found(False, "other_log")
    if (
        proof.get("leaf_index", statement.leaf_index) != statement.leaf_index
        or proof.get("leaf_hash", statement.leaf_hash) != statement.leaf_hash
    ):
        return found(False, "other_leaf")
    if statement.leaf_index is None or not _HEX_DIGEST.match(statement.leaf_hash):
        return found(False, "other_leaf")
    verified = merkle.verify_inclusion(
        bytes.fromhex(statement.leaf_hash),
        statement.leaf_index,
        size,
        [bytes.fromhex(digest) for digest in proof["inclusion_path"]],
        bytes.fromhex(root),
    )
    return found(verified, "" if verified else "path_invalid")


def receipt_check(receipt: Any, proof: Any = None) -> ReceiptCheck:
    """Verify a receipt (and its inclusion proof, if given). Raises `CheckInputError` for input
    that is not a receipt or a proof at all."""
    token = parse_receipt(receipt)
    parsed_proof = parse_proof(proof)
    try:
        payload = receipt_verify(token)
    except ReceiptInvalid as exc:
        if exc.code == "malformed":
            raise CheckInputError("not a JWS compact serialisation", "receipt_malformed") from exc
        return ReceiptCheck(False, exc.code, None, None)
    header_kid = _text(_dig(payload, "kantara", "publicKey", "kid"))
    statement = _statement(payload, header_kid)
    inclusion = _inclusion(statement, parsed_proof) if parsed_proof is not None else None
    return ReceiptCheck(True, "", statement, inclusion)


def verification_throttled(ip: str) -> int:
    """Count one verification for this client address: seconds to wait when over the limit
    (CONSENT_RECEIPT_VERIFY_RATE_LIMIT), else 0. The page and the API share the counter."""
    limits = settings.CONSENT_RECEIPT_VERIFY_RATE_LIMIT
    window = int(limits["window_seconds"])
    if ratelimit.hit("consent-receipt-verify", ratelimit.ip_bucket(ip), window) > int(limits["per_ip"]):
        _start, left = ratelimit.window(window)
        return max(1, math.ceil(left))
    return 0
