"""Per-subject encryption of the personal details carried by ledger events.

Each subject (a resident's pseudonym, or an anonymous browser) has its own random
AES-256-GCM data key. The data key is stored only wrapped (AES-256-GCM) under the consent
master key, which comes from the environment (`CONSENT_MASTER_KEY`) and never from the
database. Erasing a subject deletes its wrapped key: what was encrypted under it can no
longer be read by anyone, while the ciphertext stays in the ledger so that the Merkle
hashes, proofs and receipts keep verifying (crypto-shredding).

Associated data binds every ciphertext to its place: a wrapped key to its subject, an
event payload to its event and subject, so that blobs cannot be swapped between rows.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# A leading version byte lets a later master-key rotation tell old wrappings apart.
_WRAP_VERSION = b"\x01"
_NONCE = 12


class KeyDestroyed(LookupError):
    """The subject's key was destroyed (erasure): its encrypted details are gone for good."""


class DecryptionFailed(ValueError):
    """A ciphertext or wrapped key does not authenticate (wrong key, altered or swapped blob)."""


def decode_master_key(value: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError as exc:
        raise ImproperlyConfigured("CONSENT_MASTER_KEY must be urlsafe base64") from exc
    if len(key) != 32:
        raise ImproperlyConfigured("CONSENT_MASTER_KEY must decode to 32 bytes")
    return key


def master_key() -> bytes:
    configured = settings.CONSENT_MASTER_KEY
    if configured:
        return decode_master_key(configured)
    # Local runs only: settings refuse production without CONSENT_MASTER_KEY.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cum consent-master-key").derive(
        settings.SECRET_KEY.encode()
    )


def _subject_aad(subject_id: uuid.UUID) -> bytes:
    return b"consent-subject-key:" + subject_id.bytes


def new_wrapped_key(subject_id: uuid.UUID) -> bytes:
    """A fresh random data key for `subject_id`, returned wrapped under the master key."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE)
    return _WRAP_VERSION + nonce + AESGCM(master_key()).encrypt(nonce, data_key, _subject_aad(subject_id))


def unwrap_key(wrapped: bytes | None, subject_id: uuid.UUID) -> bytes:
    if not wrapped:
        raise KeyDestroyed("the subject's key was destroyed")
    blob = bytes(wrapped)
    if blob[:1] != _WRAP_VERSION:
        raise DecryptionFailed("unknown key wrapping version")
    try:
        return AESGCM(master_key()).decrypt(
            blob[1 : 1 + _NONCE], blob[1 + _NONCE :], _subject_aad(subject_id)
        )
    except InvalidTag as exc:
        raise DecryptionFailed("the subject key does not unwrap under this master key") from exc


def _event_aad(event_id: uuid.UUID, subject_id: uuid.UUID) -> bytes:
    return b"consent-event:" + event_id.bytes + subject_id.bytes


def encrypt_details(
    data_key: bytes, details: dict[str, Any], *, event_id: uuid.UUID, subject_id: uuid.UUID
) -> bytes:
    plaintext = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, _event_aad(event_id, subject_id))


def decrypt_details(
    data_key: bytes, blob: bytes, *, event_id: uuid.UUID, subject_id: uuid.UUID
) -> dict[str, Any]:
    blob = bytes(blob)
    try:
        plaintext = AESGCM(data_key).decrypt(blob[:_NONCE], blob[_NONCE:], _event_aad(event_id, subject_id))
    except InvalidTag as exc:
        raise DecryptionFailed("event details do not authenticate") from exc
    return json.loads(plaintext)
