"""Signing keys: creation, selection for signing, publication in JWKS, rotation.

Keys live in the database, their private half encrypted at rest, so that every web
node of a deployment signs with the same key and rotation needs no redeploy.

Life of a key (`manage.py rotate_keys`):

    created ── published in JWKS at once
    active_from ── signs from then on (created + publish-ahead delay, at least the JWKS
                   max-age, so every relying party's cached JWKS already holds it)
    retired_at ── stops signing (the successor's active_from)
    expires_at ── leaves JWKS once every token it signed has expired
                  (retired_at + the longest token lifetime + the in-process cache time)
    pruned ── `rotate_keys --prune`: private half destroyed; the public half stays in
              the table (never published again) for historical signatures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from jwcrypto import jwk

from common.crypto import decrypt_at_rest, encrypt_at_rest
from identity.audit import audit_log
from identity.models import SigningKey

logger = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
_CACHE_SECONDS = 30
# How often a process reads the key-set version from the shared cache (see published_jwks).
KEYSET_VERSION_CHECK_SECONDS = 1.0
_KEYSET_VERSION_KEY = "oidc:keyset-version"
# Decrypted, parsed private keys by kid (a kid is the key's thumbprint: it never changes).
_parsed_keys: dict[str, LoadedKey] = {}
_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, LoadedKey]] = {}
_jwks_cache: PublishedJWKS | None = None
# (monotonic time of the next read, the shared key-set version last read)
_keyset_version: tuple[float, str | None] = (0.0, None)


class NoSigningKey(RuntimeError):
    pass


@dataclass(frozen=True)
class PublishedJWKS:
    """The JWKS document, its serialized bytes and their strong ETag, as served.

    `valid_until` is a time.monotonic() deadline; `version` is the shared key-set version
    read when the document was built.
    """

    document: dict[str, Any]
    body: bytes
    etag: str
    valid_until: float
    version: str | None


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    algorithm: str
    jwk: jwk.JWK


def _generate(algorithm: str) -> jwk.JWK:
    if algorithm == "RS256":
        return jwk.JWK.generate(kty="RSA", size=3072)
    if algorithm == "ES256":
        return jwk.JWK.generate(kty="EC", crv="P-256")
    raise ValueError(f"unsupported algorithm {algorithm}")


def signing_key_create(*, algorithm: str, active_from=None, key: jwk.JWK | None = None) -> SigningKey:
    key = key or _generate(algorithm)
    kid = key.thumbprint()
    public = json.loads(key.export_public())
    public.update({"kid": kid, "alg": algorithm, "use": "sig"})
    private_pem = key.export_to_pem(private_key=True, password=None)
    return SigningKey.objects.create(
        kid=kid,
        algorithm=algorithm,
        private_key_encrypted=encrypt_at_rest(private_pem, context=kid.encode()),
        public_jwk=public,
        active_from=active_from or timezone.now(),
    )


def _signing_now(algorithm: str, now: datetime) -> Any:
    """Keys of `algorithm` allowed to sign at `now`, newest first."""
    return (
        SigningKey.objects.filter(algorithm=algorithm, active_from__lte=now)
        .filter(Q(retired_at__isnull=True) | Q(retired_at__gt=now))
        .exclude(private_key_encrypted=b"")
        .order_by("-active_from")
    )


def signing_keys_ensure() -> list[SigningKey]:
    """Create a key for each supported algorithm that has none able to sign."""
    created = []
    now = timezone.now()
    with transaction.atomic():
        for algorithm in SUPPORTED_ALGORITHMS:
            if not _signing_now(algorithm, now).exists():
                created.append(signing_key_create(algorithm=algorithm))
    clear_key_cache()
    if created:
        transaction.on_commit(announce_key_change)
    return created


def signing_key_rotate(
    *, algorithm: str, publish_ahead: timedelta | None = None, now: datetime | None = None
) -> SigningKey:
    """Create the successor key of `algorithm`: published now, signing after `publish_ahead`.

    Every key of that algorithm not yet retired stops signing when the successor starts,
    and stays published until the tokens it may have signed have expired.
    """
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm}")
    material = _generate(algorithm)  # slow for RSA: before the clock starts
    now = now or timezone.now()
    if publish_ahead is None:
        publish_ahead = timedelta(seconds=settings.OIDC_KEY_PUBLISH_AHEAD_SECONDS)
    starts = now + publish_ahead
    with transaction.atomic():
        predecessors = SigningKey.objects.select_for_update().filter(
            algorithm=algorithm, retired_at__isnull=True
        )
        predecessor_kids = list(predecessors.values_list("kid", flat=True))
        predecessors.update(retired_at=starts, expires_at=starts + token_lifetime_margin())
        key = signing_key_create(algorithm=algorithm, active_from=starts, key=material)
        audit_log(
            event="signing_key.rotated",
            data={
                "kid": key.kid,
                "algorithm": algorithm,
                "active_from": starts.isoformat(),
                "retired": predecessor_kids,
            },
        )
    clear_key_cache()
    transaction.on_commit(announce_key_change)
    return key


def signing_keys_prune(*, now: datetime | None = None) -> list[str]:
    """Destroy the private half of keys past `expires_at` (already out of JWKS). Returns kids."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = (
            SigningKey.objects.select_for_update()
            .filter(expires_at__lte=now)
            .exclude(private_key_encrypted=b"")
        )
        kids = list(expired.values_list("kid", flat=True))
        if kids:
            expired.update(private_key_encrypted=b"")
            audit_log(event="signing_key.pruned", data={"kids": kids})
    clear_key_cache()
    if kids:
        transaction.on_commit(announce_key_change)
    return kids


def clear_key_cache() -> None:
    """Forget this process's cached keys and JWKS (other processes: announce_key_change)."""
    global _jwks_cache, _keyset_version
    with _cache_lock:
        _cache.clear()
        _jwks_cache = None
        _keyset_version = (0.0, None)


def _shared_cache() -> Any:
    # The cache every process of a deployment shares: Redis, or the database without Redis
    # (the rate-limit counters' cache; the default cache may be process-local).
    return caches["ratelimit"]


def announce_key_change() -> None:
    """Tell every process that the key set changed: each re-reads JWKS within
    KEYSET_VERSION_CHECK_SECONDS (instead of at the end of its cache time). Also clears
    this process's caches. Called once the change is committed (transaction.on_commit), so
    that no process rebuilds its cache from the rows before the change."""
    try:
        _shared_cache().set(_KEYSET_VERSION_KEY, secrets.token_hex(8), timeout=None)
    except Exception:  # the caches still lapse on their own, within _jwks_cache_seconds()
        logger.warning("could not announce the signing key change through the shared cache", exc_info=True)
    clear_key_cache()


def _current_keyset_version(monotonic: float) -> str | None:
    """The shared key-set version, read at most every KEYSET_VERSION_CHECK_SECONDS."""
    global _keyset_version
    next_read, version = _keyset_version
    if monotonic < next_read:
        return version
    try:
        version = _shared_cache().get(_KEYSET_VERSION_KEY)
    except Exception:  # unreadable: rely on the cache time alone
        logger.warning("could not read the signing key-set version from the shared cache", exc_info=True)
    _keyset_version = (monotonic + KEYSET_VERSION_CHECK_SECONDS, version)
    return version


def active_signing_key(algorithm: str = "RS256") -> LoadedKey:
    monotonic = time.monotonic()
    with _cache_lock:
        hit = _cache.get(algorithm)
        if hit and hit[0] > monotonic:
            return hit[1]
    now = timezone.now()
    row = _signing_now(algorithm, now).first()
    if row is None:
        raise NoSigningKey(f"no active {algorithm} signing key: run `manage.py ensure_signing_keys`")
    loaded = _parsed_keys.get(row.kid)
    if loaded is None:
        # Parsing an RSA-3072 private key costs ~100 ms of CPU (OpenSSL validates it):
        # a key id always names the same key, so it is parsed once per process.
        pem = decrypt_at_rest(bytes(row.private_key_encrypted), context=row.kid.encode())
        loaded = LoadedKey(kid=row.kid, algorithm=row.algorithm, jwk=jwk.JWK.from_pem(pem))
        with _cache_lock:
            _parsed_keys[row.kid] = loaded
    # Cached for _CACHE_SECONDS, but never past the moment a successor starts signing or
    # this key retires, so that every node switches keys at the scheduled time.
    change = (
        SigningKey.objects.filter(algorithm=algorithm, active_from__gt=now)
        .order_by("active_from")
        .values_list("active_from", flat=True)
        .first()
    )
    deadlines = [when for when in (change, row.retired_at) if when is not None]
    ttl = float(_CACHE_SECONDS)
    if deadlines:
        ttl = max(0.0, min(ttl, (min(deadlines) - now).total_seconds()))
    with _cache_lock:
        _cache[algorithm] = (monotonic + ttl, loaded)
    return loaded


def _jwks_cache_seconds() -> float:
    # A relying party's copy of JWKS is then at most this + OIDC_JWKS_MAX_AGE_SECONDS old,
    # which must stay within the publish-ahead delay (a new key is published that long
    # before it signs): with no slack left, nothing is cached.
    slack = settings.OIDC_KEY_PUBLISH_AHEAD_SECONDS - settings.OIDC_JWKS_MAX_AGE_SECONDS
    return float(max(0, min(_CACHE_SECONDS, slack)))


def published_jwks_if_current() -> PublishedJWKS | None:
    """The cached JWKS if it is still current, without any database query; else None.

    Current means: its cache time (_jwks_cache_seconds(), never past a published key's
    `expires_at`) has not run out, and the shared key-set version (read at most every
    KEYSET_VERSION_CHECK_SECONDS) is the one it was built with.
    """
    global _jwks_cache
    monotonic = time.monotonic()
    with _cache_lock:
        hit = _jwks_cache
    if hit is None or hit.valid_until <= monotonic:
        return None
    if _current_keyset_version(monotonic) != hit.version:
        with _cache_lock:
            if _jwks_cache is hit:
                _jwks_cache = None
        return None
    return hit


def published_jwks_bytes() -> PublishedJWKS:
    """The public keys to publish, with their serialized bytes and ETag, cached in process.

    This process forgets the cache on every key change it makes (clear_key_cache); other
    processes see a change made by signing_key_rotate/_ensure/_prune within
    KEYSET_VERSION_CHECK_SECONDS (announce_key_change), any other change within
    _jwks_cache_seconds(); a key leaves the document at its `expires_at`, never later (the
    cache expires then).
    """
    global _jwks_cache
    hit = published_jwks_if_current()
    if hit is not None:
        return hit
    monotonic = time.monotonic()
    version = _current_keyset_version(monotonic)
    now = timezone.now()
    rows = list(SigningKey.objects.exclude(expires_at__lte=now).order_by("algorithm", "-active_from"))
    document = {"keys": [row.public_jwk for row in rows]}
    ttl = _jwks_cache_seconds()
    expiries = [row.expires_at for row in rows if row.expires_at is not None]
    if expiries:
        ttl = max(0.0, min(ttl, (min(expiries) - now).total_seconds()))
    body = json.dumps(document).encode()
    published = PublishedJWKS(
        document=document,
        body=body,
        etag=strong_etag(body),
        valid_until=monotonic + ttl,
        version=version,
    )
    with _cache_lock:
        _jwks_cache = published
    return published


def published_jwks() -> dict:
    """The public keys to publish (the document of published_jwks_bytes())."""
    return published_jwks_bytes().document


def strong_etag(body: bytes) -> str:
    """A strong entity tag (RFC 9110 §8.8.3) naming exactly these bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def verification_key(kid: str) -> jwk.JWK | None:
    row = SigningKey.objects.exclude(expires_at__lte=timezone.now()).filter(kid=kid).first()
    return jwk.JWK(**row.public_jwk) if row else None


def token_lifetime_margin() -> timedelta:
    """How long a retired key must stay published: the longest-lived token it may have signed.

    ID tokens (also those issued at refresh), access tokens and back-channel logout tokens
    all live at most this long after signing; a node may keep signing with a cached key
    for up to _CACHE_SECONDS after retirement if its clock lags, hence the extra margin.
    """
    oauth = settings.OAUTH2_PROVIDER
    longest = max(
        oauth["ID_TOKEN_EXPIRE_SECONDS"],
        oauth["ACCESS_TOKEN_EXPIRE_SECONDS"],
        settings.OIDC_LOGOUT_TOKEN_EXPIRE_SECONDS,
    )
    return timedelta(seconds=longest + _CACHE_SECONDS)
