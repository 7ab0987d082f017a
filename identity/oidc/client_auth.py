"""Client authentication at our back-channel endpoints (OIDC Core §9, RFC 6749 §2.3, RFC 7523).

Every client has one registered `token_endpoint_auth_method` and must use exactly that one,
at the token, PAR, revocation and introspection endpoints:

- `client_secret_basic`: HTTP Basic with the client secret;
- `client_secret_post`: `client_id` + `client_secret` in the form body;
- `private_key_jwt`: `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
  and `client_assertion`, a JWT signed (RS256 or ES256) with a key of the client's JWKS
  (registered inline, or published at its `jwks_uri`);
- `none`: public clients, identified by `client_id` only (PKCE does the rest).

OIDC Core §9 says the registered method SHOULD be used; we refuse any other (a secret
presented by a `private_key_jwt` client, or a Basic header from a `client_secret_post`
client, is an authentication failure), so that a leaked secret of a client that moved to
asymmetric keys is worth nothing, and one request never carries two methods.

The assertion (RFC 7523 §3, OIDC Core §9): `iss` = `sub` = client_id; `aud` our issuer
identifier and nothing else (assertion_audience_ok); `exp` in the future and at most
CLIENT_ASSERTION_MAX_LIFETIME seconds ahead (so the `jti` store stays small); `iat`, if
present, not in the future; `jti` used once (kept until `exp`).

Two implementations of the same rules: the Validator's (identity/oidc/request_validator.py,
on oauthlib's request and django-oauth-toolkit's Basic parsing: the oauthlib paths and the
authorization-code and refresh grants) and `authenticate_presented` below, which reads the
Authorization header and the form directly (introspection, the client-credentials grant);
both check an assertion through the one `asserted_client`.
tests/oidc/test_client_auth_direct.py sends the same requests to both and requires the
same client or the same refusal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from common import json_input, request_log
from common.crypto import keyed_hash_matches
from common.outbound import open_without_redirects
from identity.client_cache import client_by_client_id
from identity.oidc.client_uris import ClientConfigError, validate_client_uri
from identity.oidc.constants import (
    CLIENT_ASSERTION_ALGS,
    CLIENT_ASSERTION_MAX_LIFETIME,
    CLIENT_ASSERTION_TYPE,
)
from identity.oidc.models import ClientAssertionJti

log = logging.getLogger(__name__)

CLOCK_SKEW = 30
JWKS_FETCH_TIMEOUT = 3.0
JWKS_CACHE_SECONDS = 300
JWKS_MAX_BYTES = 64 * 1024
_REFETCH_GUARD_SECONDS = 30


class ClientAuthError(Exception):
    """Why a client failed to authenticate (logged with ids only, never returned in detail)."""


def method_used(request: Any, *, basic_auth: bool) -> str | None:
    """Which method this request presents; "" for none; None when it mixes several.

    `basic_auth`: whether it carries an `Authorization: Basic` header, as the caller (the
    Validator, identity/oidc/request_validator.py) reads it with django-oauth-toolkit's parser.
    """
    present = []
    if basic_auth:
        present.append("client_secret_basic")
    if getattr(request, "client_assertion", None) or getattr(request, "client_assertion_type", None):
        present.append("private_key_jwt")
    if getattr(request, "client_secret", None):
        present.append("client_secret_post")
    if len(present) > 1:
        return None
    return present[0] if present else ""


def basic_credentials(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Basic` header, else None (as django-oauth-toolkit's
    OAuth2Validator._extract_basic_auth reads it: the scheme exactly "Basic", one space)."""
    if not authorization:
        return None
    scheme, space, credentials = authorization.partition(" ")
    if not space or scheme != "Basic":
        return None
    return credentials


class _Assertion:
    """The two assertion parameters, under the names verify_client_assertion reads."""

    __slots__ = ("client_assertion", "client_assertion_type")

    def __init__(self, assertion: str | None, assertion_type: str | None) -> None:
        self.client_assertion = assertion
        self.client_assertion_type = assertion_type


def authenticate_presented(authorization: str | None, form: Mapping[str, Any]) -> Any | None:
    """The client this request authenticates, by the one method registered for it, else None.

    `authorization`: the request's Authorization header; `form`: its form body (a QueryDict:
    `.get` gives a repeated parameter's last value, as django-oauth-toolkit passes oauthlib).
    The same rules, in the same order, as Validator._client_authenticated with
    django-oauth-toolkit's _authenticate_basic_auth and _authenticate_request_body: exactly
    one method presented; a Basic header decoded as base64 then UTF-8, split at the first
    colon, both halves form-decoded (RFC 6749 §2.3.1); the secret compared with its keyed
    hash in constant time (common/crypto.py); a body `client_id` naming another client
    refused; the client's registered method required. Nothing is logged but a refused
    assertion's reason (ids only).
    """
    basic = basic_credentials(authorization)
    assertion = form.get("client_assertion") or None
    assertion_type = form.get("client_assertion_type") or None
    secret = form.get("client_secret") or None
    body_client_id = form.get("client_id") or None
    if sum((bool(basic), bool(assertion or assertion_type), bool(secret))) != 1:
        return None  # none presented, or several at once (RFC 6749 §2.3)
    if assertion or assertion_type:
        asserted = asserted_client(_Assertion(assertion, assertion_type), body_client_id, client_by_client_id)
        if asserted is None:
            return None
        client = asserted[1]
        method = "private_key_jwt"
    elif basic:
        try:
            decoded = base64.b64decode(basic).decode("utf-8")
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            return None
        client_id, colon, basic_secret = decoded.partition(":")
        if not colon:
            return None
        client_id, basic_secret = unquote_plus(client_id), unquote_plus(basic_secret)
        client = client_by_client_id(client_id)
        if client is None or client.client_id != client_id:
            return None
        if not keyed_hash_matches(basic_secret, client.client_secret or ""):
            return None
        if body_client_id and body_client_id != client.client_id:
            return None  # a body client_id naming another client than the Basic credentials
        method = "client_secret_basic"
    else:
        client = client_by_client_id(body_client_id) if isinstance(body_client_id, str) else None
        if client is None or not keyed_hash_matches(str(secret), client.client_secret or ""):
            return None
        method = "client_secret_post"
    if client.token_endpoint_auth_method != method:
        return None
    request_log.set_client_id(client.client_id)  # the request's access line
    return client


def asserted_client(
    presented: Any, body_client_id: str | None, load_client: Callable[[str], Any]
) -> tuple[str, Any] | None:
    """private_key_jwt (both implementations): (the assertion's client_id, the client) when
    the assertion names a client registered for private_key_jwt, any body `client_id` names
    the same client, and the assertion verifies (verify_client_assertion); None otherwise."""
    client_id = assertion_client_id(presented)
    if not client_id or (body_client_id and body_client_id != client_id):
        return None
    client = load_client(client_id)
    if client is None or client.token_endpoint_auth_method != "private_key_jwt":
        return None
    try:
        verify_client_assertion(client, presented)
    except ClientAuthError as exc:
        log.info("client %s: private_key_jwt refused: %s", client.client_id, exc)
        return None
    return client_id, client


def assertion_audience_ok(audience: Any) -> bool:
    """`aud` of a client assertion: our issuer identifier, as a string or alone in an array.

    Not an endpoint URL, nor an array naming anyone else as well: an assertion a client made
    for another party (or for several) could be replayed here by that party (the 2025
    audience-injection disclosure; the OpenID Foundation's guidance since then is to accept
    the issuer identifier only, compared exactly).
    """
    issuer = settings.ISSUER
    return audience == issuer or audience == [issuer]


# --- the client's keys ---------------------------------------------------------------------------


def _jwks_cache_key(client: Any) -> str:
    digest = hashlib.sha256(client.jwks_uri.encode()).hexdigest()[:16]
    return f"oidc:client-jwks:{client.client_id}:{digest}"


def fetch_jwks(uri: str) -> dict[str, Any]:
    """GET a JWK Set: https only (http on loopback in development), short timeout, small body."""

    try:
        validate_client_uri(uri, what="JWKS URI")
    except ClientConfigError as exc:
        raise ClientAuthError(str(exc)) from exc
    request = urllib.request.Request(uri, headers={"Accept": "application/json"})  # noqa: S310 - checked above
    try:
        with open_without_redirects(request, timeout=JWKS_FETCH_TIMEOUT) as response:
            body = response.read(JWKS_MAX_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise ClientAuthError(f"JWKS not reachable: {type(exc).__name__}") from exc
    if len(body) > JWKS_MAX_BYTES:
        raise ClientAuthError("JWKS too large")
    try:
        data = json_input.loads(body)
    except ValueError as exc:
        raise ClientAuthError("JWKS is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ClientAuthError("JWKS has no keys")
    return data


def client_jwks(client: Any, *, refresh: bool = False) -> jwk.JWKSet:
    """The client's public keys: inline, or from its jwks_uri (cached JWKS_CACHE_SECONDS)."""
    if client.jwks:
        data = client.jwks
    elif client.jwks_uri:
        key = _jwks_cache_key(client)
        data = None if refresh else cache.get(key)
        if data is None:
            data = fetch_jwks(client.jwks_uri)
            cache.set(key, data, JWKS_CACHE_SECONDS)
    else:
        raise ClientAuthError("client has no keys")
    try:
        return jwk.JWKSet.from_json(json.dumps(data))
    except (JWException, ValueError, TypeError) as exc:
        raise ClientAuthError("client keys are not a valid JWK Set") from exc


# --- private_key_jwt -------------------------------------------------------------------------------


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    token = jws.JWS()
    try:
        token.deserialize(assertion)
        header = token.jose_header
        payload = json_input.loads(token.objects["payload"])
    except (JWException, ValueError, TypeError, KeyError) as exc:
        raise ClientAuthError("malformed client assertion") from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise ClientAuthError("malformed client assertion")
    return header, payload


def assertion_client_id(request: Any) -> str | None:
    """The client an assertion names (iss), before any verification: to load the client."""
    assertion = getattr(request, "client_assertion", None)
    if not assertion:
        return None
    try:
        _header, payload = _unverified(assertion)
    except ClientAuthError:
        return None
    value = payload.get("iss")
    return value if isinstance(value, str) else None


def _verify_signature(assertion: str, alg: str, keys: jwk.JWKSet, kid: str | None) -> bool:
    # JWKSet iterates over its keys; types-jwcrypto types it as the dict it derives from.
    candidates = [keys.get_key(kid)] if kid else list(keys)  # type: ignore[arg-type]
    for key in candidates:
        if key is None:
            continue
        token = jws.JWS()
        try:
            token.deserialize(assertion)
            token.verify(key, alg=alg)
            return True
        except (JWException, ValueError, TypeError):
            continue
    return False


def verify_client_assertion(client: Any, request: Any, *, now: float | None = None) -> None:
    """Raise ClientAuthError unless the request carries a valid, fresh assertion of `client`."""
    if getattr(request, "client_assertion_type", None) != CLIENT_ASSERTION_TYPE:
        raise ClientAuthError("unsupported client_assertion_type")
    assertion = getattr(request, "client_assertion", None) or ""
    header, claims = _unverified(assertion)
    alg = header.get("alg")
    if alg not in CLIENT_ASSERTION_ALGS:
        raise ClientAuthError(f"assertion alg {alg!r} not accepted")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    keys = client_jwks(client)
    if not _verify_signature(assertion, alg, keys, kid):
        if not client.jwks_uri or client.jwks:
            raise ClientAuthError("assertion signature not valid")
        # The client may have rotated its keys: fetch once more (at most every 30 s).
        guard = _jwks_cache_key(client) + ":refetched"
        if not cache.add(guard, 1, _REFETCH_GUARD_SECONDS):
            raise ClientAuthError("assertion signature not valid")
        keys = client_jwks(client, refresh=True)
        if not _verify_signature(assertion, alg, keys, kid):
            raise ClientAuthError("assertion signature not valid")

    current = time.time() if now is None else now
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise ClientAuthError("iss and sub must be the client_id")
    if not assertion_audience_ok(claims.get("aud")):
        raise ClientAuthError("aud is not exactly this authorization server's issuer")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise ClientAuthError("exp is required")
    if exp <= current - CLOCK_SKEW:
        raise ClientAuthError("assertion expired")
    if exp > current + CLIENT_ASSERTION_MAX_LIFETIME + CLOCK_SKEW:
        raise ClientAuthError("assertion lives too long")
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, int | float) or iat > current + CLOCK_SKEW):
        raise ClientAuthError("iat is in the future")
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int | float) or nbf > current + CLOCK_SKEW):
        raise ClientAuthError("assertion not yet valid")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise ClientAuthError("jti is required")
    jti_record_once(client_id=client.client_id, jti=jti, exp=float(exp), now=current)


def jti_record_once(*, client_id: str, jti: str, exp: float, now: float) -> None:
    expires_at = datetime.fromtimestamp(exp + CLOCK_SKEW, tz=UTC)
    digest = hashlib.sha256(jti.encode("utf-8")).hexdigest()
    try:
        with transaction.atomic():
            ClientAssertionJti.objects.create(client_id=client_id, jti_hash=digest, expires_at=expires_at)
    except IntegrityError as exc:
        raise ClientAuthError("assertion jti already used") from exc
    # Forget what can no longer be replayed (expired assertions are refused anyway).
    ClientAssertionJti.objects.filter(expires_at__lt=datetime.fromtimestamp(now, tz=UTC)).delete()
