"""Signing keys: creation, selection for signing, publication in JWKS.

Keys live in the database, their private half encrypted at rest, so that every web
node of a deployment signs with the same key and rotation needs no redeploy.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from jwcrypto import jwk

from identity.crypto import decrypt_at_rest, encrypt_at_rest
from identity.models import SigningKey

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
_CACHE_SECONDS = 30
_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, LoadedKey]] = {}


class NoSigningKey(RuntimeError):
    pass


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


def signing_key_create(*, algorithm: str, active_from=None) -> SigningKey:
    key = _generate(algorithm)
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


def signing_keys_ensure() -> list[SigningKey]:
    """Create a key for each supported algorithm that has none able to sign."""
    created = []
    now = timezone.now()
    with transaction.atomic():
        for algorithm in SUPPORTED_ALGORITHMS:
            usable = SigningKey.objects.filter(
                algorithm=algorithm, retired_at__isnull=True, active_from__lte=now
            )
            if not usable.exists():
                created.append(signing_key_create(algorithm=algorithm))
    clear_key_cache()
    return created


def clear_key_cache() -> None:
    with _cache_lock:
        _cache.clear()


def active_signing_key(algorithm: str = "RS256") -> LoadedKey:
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(algorithm)
        if hit and hit[0] > now:
            return hit[1]
    row = (
        SigningKey.objects.filter(
            algorithm=algorithm, retired_at__isnull=True, active_from__lte=timezone.now()
        )
        .order_by("-active_from")
        .first()
    )
    if row is None:
        raise NoSigningKey(f"no active {algorithm} signing key: run `manage.py ensure_signing_keys`")
    pem = decrypt_at_rest(bytes(row.private_key_encrypted), context=row.kid.encode())
    loaded = LoadedKey(kid=row.kid, algorithm=row.algorithm, jwk=jwk.JWK.from_pem(pem))
    with _cache_lock:
        _cache[algorithm] = (now + _CACHE_SECONDS, loaded)
    return loaded


def published_jwks() -> dict:
    now = timezone.now()
    rows = SigningKey.objects.exclude(expires_at__lte=now).order_by("algorithm", "-active_from")
    return {"keys": [row.public_jwk for row in rows]}


def verification_key(kid: str) -> jwk.JWK | None:
    row = SigningKey.objects.exclude(expires_at__lte=timezone.now()).filter(kid=kid).first()
    return jwk.JWK(**row.public_jwk) if row else None


def token_lifetime_margin() -> timedelta:
    oauth = settings.OAUTH2_PROVIDER
    return timedelta(seconds=max(oauth["ID_TOKEN_EXPIRE_SECONDS"], oauth["ACCESS_TOKEN_EXPIRE_SECONDS"]))
