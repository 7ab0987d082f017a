"""Password hashers: Argon2id for everything new, legacy schemes for imported accounts.

New passwords are hashed with Argon2id (argon2-cffi) at or above OWASP's minimum
(m=19 MiB, t=2, p=1). The stored form is Django's:
``argon2$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>``.

Legacy hashes are accepted at sign-in and re-hashed with Argon2id at that moment by
Django's upgrade path: ``check_password`` → ``verify_password`` sees that the hash's
algorithm is not the preferred one (or that ``must_update`` says so) and calls the
setter, which saves the new Argon2id hash. The stored legacy formats are:

=================================================  ============================================
stored form                                        verified by
=================================================  ============================================
``pbkdf2_sha256$<iterations>$<salt>$<b64>``        Django's PBKDF2PasswordHasher
``pbkdf2_sha1$<iterations>$<salt>$<b64>``          Django's PBKDF2SHA1PasswordHasher
``bcrypt_sha256$$2b$<cost>$<53 chars>``            Django's BCryptSHA256PasswordHasher
``argon2$argon2i|d|id$v=19$m=..,t=..,p=..$..``     Argon2idHasher (re-hashed if weaker)
``bcrypt$$2a|2b|2y$<cost>$<53 chars>``             LegacyBcryptHasher (raw bcrypt; also
                                                   Django's own ``bcrypt$`` format)
``legacy_sha1$sp$<salt>$<40 hex>``                 LegacySaltedSHA1Hasher, SHA-1(salt ‖ password)
``legacy_sha1$ps$<salt>$<40 hex>``                 LegacySaltedSHA1Hasher, SHA-1(password ‖ salt)
``legacy_sha256$sp$<salt>$<64 hex>``               LegacySaltedSHA256Hasher, SHA-256(salt ‖ password)
``legacy_sha256$ps$<salt>$<64 hex>``               LegacySaltedSHA256Hasher, SHA-256(password ‖ salt)
=================================================  ============================================

For the salted digests the order marker (``sp`` = salt then password, ``ps`` = password
then salt) is its own field so that one hasher per digest handles both orders; the salt
is used as UTF-8 text and may itself contain ``$`` (the digest is the last field).
Passwords are UTF-8 encoded.

Hashers that only verify (bcrypt, salted digests) refuse to create hashes: ``salt()``
and ``encode()`` raise, so ``make_password(..., hasher="bcrypt")`` cannot produce one.
Every comparison of digests is constant-time.

Argon2idHasher also applies Unicode NFKC normalisation to new passwords (NIST SP
800-63B §5.1.1.2), so "é" typed precomposed or decomposed is the same password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import unicodedata
from typing import TYPE_CHECKING, Any

import bcrypt
from django.contrib.auth.hashers import Argon2PasswordHasher, BasePasswordHasher, get_hasher, mask_hash
from django.utils.translation import gettext_noop as _noop

from common.malloc_reserve import MallocReserve

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

BCRYPT_MAX_PASSWORD_BYTES = 72
RAW_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
SALT_THEN_PASSWORD = "sp"
PASSWORD_THEN_SALT = "ps"
DIGEST_ORDERS = (SALT_THEN_PASSWORD, PASSWORD_THEN_SALT)


def normalize_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


# One Argon2id computation at a time per process. A web worker has about one core (one
# worker per core, docs/operators.md), so running its threads' checks side by side gains
# no throughput; but each one holds 19 MiB, which the C allocator then keeps: one at a time,
# a worker needs one such block, reused from check to check (bench/README.md, "Sign-in and
# worker memory"). Creating and checking hashes (the unknown-address path hashes too) wait
# alike, so waiting reveals nothing about an account.
_ARGON2_SLOT = threading.Lock()


class Argon2idHasher(Argon2PasswordHasher):
    """Argon2id at or above OWASP's minimum (m=19 MiB, t=2, p=1).

    Django's Argon2PasswordHasher already uses the Argon2id variant (since Django 3.2);
    ``params()`` pins it here so that no upstream default can change the variant.
    """

    time_cost = 2
    memory_cost = 19 * 1024  # KiB = 19 MiB
    parallelism = 1

    # Argon2PasswordHasher.params and BasePasswordHasher._load_library are Django's; django-stubs
    # declares neither.
    def params(self) -> Any:
        params = super().params()  # type: ignore[misc]
        argon2 = self._load_library()  # type: ignore[attr-defined]
        params.type = argon2.low_level.Type.ID
        return params

    def encode(self, password: str, salt: str) -> str:
        with _ARGON2_SLOT, _ARGON2_RESERVE.released():
            return super().encode(normalize_password(password), salt)

    def _verify_exact(self, password: str, encoded: str) -> bool:
        argon2 = self._load_library()  # type: ignore[attr-defined]  # as in params
        try:
            with _ARGON2_SLOT, _ARGON2_RESERVE.released():
                return super().verify(password, encoded)
        except (argon2.exceptions.InvalidHashError, ValueError, AssertionError):
            # A malformed stored hash is a failed sign-in, never a server error.
            return False

    def verify(self, password: str, encoded: str) -> bool:
        normalized = normalize_password(password)
        if self._verify_exact(normalized, encoded):
            return True
        # Argon2 hashes imported from the legacy portal were made from the password as
        # typed, without normalisation.
        return normalized != password and self._verify_exact(password, encoded)

    def must_update(self, encoded: str) -> bool:
        try:
            return bool(super().must_update(encoded))
        except (ValueError, AssertionError):
            return True


# Between two computations, the block that Argon2id mallocs at our cost (m KiB, its whole
# memory) is kept aside so that the heap's small allocations cannot cut into it: the next
# computation gets it back whole instead of growing the heap by another 19 MiB
# (common/malloc_reserve.py). Hashes at another cost (imported ones) allocate as before.
_ARGON2_RESERVE = MallocReserve(Argon2idHasher.memory_cost * 1024)


class FastTestArgon2idHasher(Argon2idHasher):
    """Same algorithm and format at a low cost, selected by settings only under pytest."""

    time_cost = 1
    memory_cost = 64


class _VerifyOnlyHasher(BasePasswordHasher):
    """A hasher for imported hashes: verifies, never creates, always asks to be upgraded."""

    def salt(self) -> str:
        raise NotImplementedError(f"{self.algorithm} hashes are verified, never created")

    def encode(self, password: str, salt: str) -> str:
        raise NotImplementedError(f"{self.algorithm} hashes are verified, never created")

    def must_update(self, encoded: str) -> bool:
        return True

    def harden_runtime(self, password: str, encoded: str) -> None:
        # Never reached: Django only hardens when the hasher is the preferred one.
        pass


class LegacyBcryptHasher(_VerifyOnlyHasher):
    """Raw bcrypt hashes (``$2a$``, ``$2b$``, ``$2y$``) as older portals stored them.

    Stored as ``bcrypt$<raw hash>`` so Django can tell the algorithm apart (the same
    form as Django's own BCryptPasswordHasher). bcrypt only ever used the first 72
    bytes of a password; the library now refuses longer input, so it is truncated
    here exactly as the original implementation did when the hash was made.
    """

    algorithm = "bcrypt"

    def verify(self, password: str, encoded: str) -> bool:
        algorithm, _, raw = encoded.partition("$")
        if algorithm != self.algorithm or not raw.startswith(RAW_BCRYPT_PREFIXES):
            return False
        try:
            raw_bytes = raw.encode("ascii")
        except UnicodeEncodeError:
            return False
        if raw.startswith("$2y$"):  # PHP's name for the same (fixed) algorithm
            raw_bytes = b"$2b$" + raw_bytes[4:]
        try:
            return bcrypt.checkpw(password.encode("utf-8")[:BCRYPT_MAX_PASSWORD_BYTES], raw_bytes)
        except ValueError:
            return False

    def decode(self, encoded: str) -> dict[str, Any]:
        algorithm, _, raw = encoded.partition("$")
        return {"algorithm": algorithm, "hash": raw, "salt": ""}

    def safe_summary(self, encoded: str) -> dict[str | StrPromise, Any]:
        return {_noop("algorithm"): self.algorithm, _noop("hash"): mask_hash(encoded)}


class _LegacySaltedDigestHasher(_VerifyOnlyHasher):
    """``<algorithm>$<sp|ps>$<salt>$<hexdigest>``: a single salted SHA digest.

    ``sp``: digest = H(salt ‖ password); ``ps``: digest = H(password ‖ salt).
    """

    digest: Any = None
    digest_hex_length = 0

    def decode(self, encoded: str) -> dict[str, Any]:
        algorithm, order, rest = encoded.split("$", 2)
        salt, digest = rest.rsplit("$", 1)
        return {"algorithm": algorithm, "order": order, "salt": salt, "hash": digest}

    def _hexdigest(self, password: str, salt: str, order: str) -> str:
        material = salt + password if order == SALT_THEN_PASSWORD else password + salt
        return str(self.digest(material.encode("utf-8")).hexdigest())

    def verify(self, password: str, encoded: str) -> bool:
        try:
            decoded = self.decode(encoded)
        except ValueError:
            return False
        if decoded["algorithm"] != self.algorithm or decoded["order"] not in DIGEST_ORDERS:
            return False
        expected = decoded["hash"].lower()
        if len(expected) != self.digest_hex_length:
            return False
        actual = self._hexdigest(password, decoded["salt"], decoded["order"])
        return hmac.compare_digest(actual.encode("ascii"), expected.encode("utf-8"))

    def safe_summary(self, encoded: str) -> dict[str | StrPromise, Any]:
        decoded = self.decode(encoded)
        return {
            _noop("algorithm"): decoded["algorithm"],
            _noop("order"): decoded["order"],
            _noop("salt"): mask_hash(decoded["salt"], show=2),
            _noop("hash"): mask_hash(decoded["hash"]),
        }


class LegacySaltedSHA256Hasher(_LegacySaltedDigestHasher):
    algorithm = "legacy_sha256"
    digest = hashlib.sha256
    digest_hex_length = 64


class LegacySaltedSHA1Hasher(_LegacySaltedDigestHasher):
    algorithm = "legacy_sha1"
    digest = hashlib.sha1
    digest_hex_length = 40


# --- a password check with no account to check it against ----------------------------------

_DECOYS: dict[tuple[str, str], str] = {}


def password_check_without_account(password: str) -> None:
    """Spend exactly what checking `password` against an account's current hash costs.

    For an unknown address, or an account with no password (FranceConnect only), the sign-in
    must take as long as a wrong password would: the default hasher *verifies* `password`
    against a decoy hash made at its own parameters (once per process and hasher). Verifying,
    not hashing, matters: Argon2idHasher.verify may run Argon2 twice (a password that NFKC
    changes is also tried as typed), and a plain make_password would run it once.
    """
    hasher = get_hasher("default")
    key = (f"{type(hasher).__module__}.{type(hasher).__qualname__}", str(hasher.algorithm))
    decoy = _DECOYS.get(key)
    if decoy is None:
        decoy = _DECOYS[key] = hasher.encode(secrets.token_urlsafe(24), hasher.salt())
    hasher.verify(password, decoy)
