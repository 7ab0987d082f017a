"""Small cryptographic helpers shared by the apps (common plumbing).

- Machine-generated secrets (client secrets, verification tokens) have enough entropy
  that a keyed fast hash (HMAC-SHA-256) is the right way to store them: it resists
  offline guessing as long as the key stays out of the database, and it costs
  microseconds per check instead of a password hash per client-authenticated call.
- Signing keys are encrypted at rest with AES-256-GCM under a key-encryption key that
  comes from the environment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SECRET_HASH_PREFIX = "hmac-sha256$"


def _client_secret_key() -> bytes:
    return hashlib.sha256(settings.CLIENT_SECRET_HMAC_KEY.encode()).digest()


def keyed_hash(value: str) -> str:
    """HMAC-SHA-256 of a high-entropy machine secret, tagged with its scheme."""
    digest = hmac.new(_client_secret_key(), value.encode("utf-8"), hashlib.sha256).hexdigest()
    return SECRET_HASH_PREFIX + digest


def keyed_hash_matches(value: str, stored: str) -> bool:
    if not stored.startswith(SECRET_HASH_PREFIX) or not value:
        return False
    return hmac.compare_digest(keyed_hash(value), stored)


def generate_secret(nbytes: int = 32) -> str:
    """256 bits from the OS CSPRNG, URL-safe."""
    return secrets.token_urlsafe(nbytes)


def _key_encryption_key() -> bytes:
    configured = settings.KEY_ENCRYPTION_KEY
    if configured:
        try:
            key = base64.urlsafe_b64decode(configured + "=" * (-len(configured) % 4))
        except ValueError as exc:
            raise ImproperlyConfigured("KEY_ENCRYPTION_KEY must be urlsafe base64") from exc
        if len(key) != 32:
            raise ImproperlyConfigured("KEY_ENCRYPTION_KEY must decode to 32 bytes")
        return key
    # Local runs only (settings refuse production without KEY_ENCRYPTION_KEY).
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cum key-encryption-key").derive(
        settings.SECRET_KEY.encode()
    )


def encrypt_at_rest(plaintext: bytes, *, context: bytes) -> bytes:
    """AES-256-GCM; `context` is bound as associated data (e.g. the key id)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(_key_encryption_key()).encrypt(nonce, plaintext, context)


def decrypt_at_rest(blob: bytes, *, context: bytes) -> bytes:
    return AESGCM(_key_encryption_key()).decrypt(blob[:12], blob[12:], context)
