"""Password hashers: Argon2id for everything new, legacy schemes for imported accounts.

Legacy hashes (PBKDF2, bcrypt, salted SHA-1/SHA-256 from the 2015 portal) are accepted
at sign-in and re-hashed with Argon2id at that moment by Django's `check_password`
upgrade path (`must_update` / preferred hasher).
"""

from __future__ import annotations

import hashlib
from typing import Any

import bcrypt
from django.contrib.auth.hashers import Argon2PasswordHasher, BasePasswordHasher, mask_hash
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext_noop as _noop


class Argon2idHasher(Argon2PasswordHasher):
    """Argon2id at or above OWASP's minimum (m=19 MiB, t=2, p=1)."""

    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1


class FastTestArgon2idHasher(Argon2idHasher):
    """Same algorithm and format at a low cost, selected by settings only under pytest."""

    time_cost = 1
    memory_cost = 64


class LegacyBcryptHasher(BasePasswordHasher):
    """Raw bcrypt hashes (`$2a$`, `$2b$`, `$2y$`) as older portals stored them.

    Imported as `bcrypt$<raw hash>` so Django can tell the algorithm apart.
    """

    algorithm = "bcrypt"

    def salt(self) -> str:  # pragma: no cover - never used to create hashes
        raise NotImplementedError("legacy hashes are verified, never created")

    def encode(self, password: str, salt: str) -> str:  # pragma: no cover
        raise NotImplementedError("legacy hashes are verified, never created")

    def verify(self, password: str, encoded: str) -> bool:
        algorithm, _, raw = encoded.partition("$")
        if algorithm != self.algorithm or not raw.startswith(("$2a$", "$2b$", "$2y$")):
            return False
        raw_bytes = raw.encode("ascii")
        if raw.startswith("$2y$"):  # PHP's name for the same algorithm
            raw_bytes = b"$2b$" + raw_bytes[4:]
        try:
            return bcrypt.checkpw(password.encode("utf-8"), raw_bytes)
        except ValueError:
            return False

    def decode(self, encoded: str) -> dict[str, Any]:
        algorithm, _, raw = encoded.partition("$")
        return {"algorithm": algorithm, "hash": raw, "salt": ""}

    def safe_summary(self, encoded: str) -> dict[str, Any]:
        return {_noop("algorithm"): self.algorithm, _noop("hash"): mask_hash(encoded)}

    def must_update(self, encoded: str) -> bool:
        return True

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass


class _LegacySaltedDigestHasher(BasePasswordHasher):
    """`<algorithm>$<salt>$<hexdigest>` where digest = H(salt + password).

    The 2015 portal stored salt-prefixed digests; exports also contain the
    password-then-salt order, recorded as `<algorithm>_ps$<salt>$<hexdigest>`.
    """

    digest: Any = None
    salt_first = True

    def salt(self) -> str:  # pragma: no cover
        raise NotImplementedError("legacy hashes are verified, never created")

    def encode(self, password: str, salt: str) -> str:
        material = (salt + password) if self.salt_first else (password + salt)
        return f"{self.algorithm}${salt}${self.digest(material.encode('utf-8')).hexdigest()}"

    def verify(self, password: str, encoded: str) -> bool:
        try:
            algorithm, salt, _digest = encoded.split("$", 2)
        except ValueError:
            return False
        if algorithm != self.algorithm:
            return False
        return constant_time_compare(encoded, self.encode(password, salt))

    def decode(self, encoded: str) -> dict[str, Any]:
        algorithm, salt, digest = encoded.split("$", 2)
        return {"algorithm": algorithm, "hash": digest, "salt": salt}

    def safe_summary(self, encoded: str) -> dict[str, Any]:
        decoded = self.decode(encoded)
        return {
            _noop("algorithm"): decoded["algorithm"],
            _noop("salt"): mask_hash(decoded["salt"], show=2),
            _noop("hash"): mask_hash(decoded["hash"]),
        }

    def must_update(self, encoded: str) -> bool:
        return True

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass


class LegacySaltedSHA256Hasher(_LegacySaltedDigestHasher):
    algorithm = "legacy_sha256"
    digest = hashlib.sha256


class LegacySaltedSHA1Hasher(_LegacySaltedDigestHasher):
    algorithm = "legacy_sha1"
    digest = hashlib.sha1
