"""Connectors' values at rest: AES-256-GCM (common.crypto) bound to the row they belong to.

A connector's secrets are bound to the `PartnerConnector` id, a link's reference to the
`PartnerLink` id: a sealed value copied to another row does not open. The keyed hash of a
reference (HMAC, common.crypto.keyed_hash) finds a card already linked, scoped to the
connector, without decrypting anything.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.exceptions import InvalidTag

from common.crypto import decrypt_at_rest, encrypt_at_rest, keyed_hash


class Unsealable(ValueError):
    """A sealed value that does not open (wrong row, altered, or another key)."""


def _secrets_context(connector_id: Any) -> bytes:
    return f"connectors.secrets:{connector_id}".encode()


def _reference_context(link_id: Any) -> bytes:
    return f"connectors.link:{link_id}".encode()


def seal_secrets(connector_id: Any, secrets: dict[str, str]) -> bytes:
    if not secrets:
        return b""
    return encrypt_at_rest(
        json.dumps(secrets, sort_keys=True).encode(), context=_secrets_context(connector_id)
    )


def open_secrets(connector_id: Any, sealed: bytes | memoryview) -> dict[str, str]:
    blob = bytes(sealed or b"")
    if not blob:
        return {}
    try:
        value = json.loads(decrypt_at_rest(blob, context=_secrets_context(connector_id)))
    except (InvalidTag, ValueError) as exc:
        raise Unsealable("the connector's secrets do not open") from exc
    return {str(key): str(item) for key, item in value.items()}


def seal_reference(link_id: Any, reference: str) -> bytes:
    return encrypt_at_rest(reference.encode(), context=_reference_context(link_id))


def open_reference(link_id: Any, sealed: bytes | memoryview) -> str:
    try:
        return decrypt_at_rest(bytes(sealed), context=_reference_context(link_id)).decode()
    except (InvalidTag, ValueError) as exc:
        raise Unsealable("the link's reference does not open") from exc


def reference_hash(connector_id: Any, reference: str) -> str:
    return keyed_hash(f"connectors.reference:{connector_id}:{reference}")
