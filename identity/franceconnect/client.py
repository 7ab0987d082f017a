"""The FranceConnect v2 relying-party logic: discovery, authorize URL, code exchange, ID
token and userinfo verification, end-session URL. No Django request in here: views and
services call these functions and turn `FranceConnectError`s into resident-facing messages.

What is checked (OpenID Connect Core 1.0 §3.1.3.7, §5.3.2; FranceConnect v2 partner docs):

- discovery: fetched from ``{issuer}/.well-known/openid-configuration`` over HTTPS (plain
  http only for a loopback test provider), cached; its ``issuer`` must equal the configured
  one exactly (OIDC Discovery §4.3);
- ID token: a compact JWS signed with ES256 or RS256 by a key of the upstream JWKS (any
  other `alg` — HS256, `none` — and any JWE are refused before a key is even looked at);
  ``iss`` = the discovered issuer, ``aud`` contains our client id (``azp`` = our client id
  when there are several audiences), ``exp`` in the future, ``iat`` not in the future nor
  too old, ``nonce`` = the one we sent, a non-empty ``sub``, ``acr`` at least the level we
  asked for (eidas1 < eidas2 < eidas3), ``at_hash`` when present;
- userinfo: FranceConnect v2 answers a signed JWT (``application/jwt``); a plain JSON
  answer is refused, the JWS is verified like the ID token, its ``sub`` must equal the ID
  token's, and its ``iss``/``aud``/``exp`` are checked when present.

Upstream keys are cached for a few minutes and refetched once when an unknown `kid` shows
up (key rotation), never more often than once a minute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request

from django.conf import settings
from django.core.cache import cache
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from common.outbound import open_without_redirects

log = logging.getLogger(__name__)

ALLOWED_ALGS = ("ES256", "RS256")
ACR_LEVELS = ("eidas1", "eidas2", "eidas3")
LEEWAY_SECONDS = 60
ID_TOKEN_MAX_AGE_SECONDS = 10 * 60
MAX_RESPONSE_BYTES = 512 * 1024
JWKS_CACHE_SECONDS = 10 * 60
JWKS_REFRESH_MIN_INTERVAL = 60
# After FranceConnect failed to answer discovery, later clicks fail at once for this long
# instead of each holding a web worker for FRANCECONNECT_TIMEOUT seconds.
UNAVAILABLE_BACKOFF_SECONDS = 30
PIVOT_CLAIMS = ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


# --- errors ------------------------------------------------------------------------------------


class FranceConnectError(Exception):
    """A FranceConnect sign-in that cannot go on. `code` goes to the audit log (never claims)."""

    code = "error"

    def __init__(self, code: str | None = None, detail: str = "") -> None:
        if code:
            self.code = code
        self.detail = detail
        super().__init__(f"{self.code}: {detail}" if detail else self.code)


class UpstreamUnavailable(FranceConnectError):
    """FranceConnect could not be reached, timed out, or answered a server error."""

    code = "unavailable"


class UpstreamDenied(FranceConnectError):
    """FranceConnect sent the resident back with an OAuth error (e.g. access_denied)."""

    code = "upstream_error"


class VerificationFailed(FranceConnectError):
    """Something FranceConnect sent (or did not send) fails a protocol check."""

    code = "invalid"


class NotConfigured(FranceConnectError):
    code = "not_configured"


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    acr: str
    prompt: str
    timeout: int
    discovery_cache_seconds: int

    @classmethod
    def from_settings(cls) -> Config:
        return cls(
            issuer=settings.FRANCECONNECT_ISSUER.rstrip("/"),
            client_id=settings.FRANCECONNECT_CLIENT_ID,
            client_secret=settings.FRANCECONNECT_CLIENT_SECRET,
            scopes=tuple(settings.FRANCECONNECT_SCOPES),
            acr=settings.FRANCECONNECT_ACR,
            prompt=settings.FRANCECONNECT_PROMPT,
            timeout=settings.FRANCECONNECT_TIMEOUT,
            discovery_cache_seconds=settings.FRANCECONNECT_DISCOVERY_CACHE_SECONDS,
        )

    def require_credentials(self) -> None:
        if not (self.client_id and self.client_secret):
            log.warning("FranceConnect: FRANCECONNECT_CLIENT_ID/FRANCECONNECT_CLIENT_SECRET are not set")
            raise NotConfigured(detail="client credentials missing")


@dataclass(frozen=True)
class Provider:
    """The parts of the upstream discovery document we use."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str = ""
    token_endpoint_auth_methods: tuple[str, ...] = ()

    @property
    def token_auth_method(self) -> str:
        """client_secret_post when offered (FranceConnect's documented method), else basic."""
        methods = self.token_endpoint_auth_methods
        if "client_secret_post" in methods:
            return "client_secret_post"
        return "client_secret_basic"


@dataclass(frozen=True)
class PivotIdentity:
    """The identity pivot and email as FranceConnect sent them. Kept in memory only."""

    given_name: str = ""
    family_name: str = ""
    preferred_username: str = ""
    birthdate: str = ""
    gender: str = ""
    birthplace: str = ""
    birthcountry: str = ""
    email: str = ""

    @property
    def usual_family_name(self) -> str:
        """The usage name (nom d'usage) when there is one, else the birth name."""
        return self.preferred_username or self.family_name


@dataclass(frozen=True)
class Authentication:
    """A verified FranceConnect sign-in."""

    sub: str
    acr: str
    amr: tuple[str, ...]
    id_token: str
    identity: PivotIdentity
    upstream_sid: str = ""
    claims_received: tuple[str, ...] = field(default_factory=tuple)


# --- HTTP -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise VerificationFailed("bad_response", "body is not JSON") from exc


def _check_url(url: str, *, what: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and not settings.PRODUCTION:
        return url  # a local stand-in provider (tests, development)
    raise VerificationFailed("bad_discovery", f"{what} must be an https URL")


def _http(
    config: Config,
    method: str,
    url: str,
    *,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> _Response:
    body = urlencode(data).encode() if data is not None else None
    request = Request(url, data=body, method=method)  # noqa: S310 - scheme checked by _check_url
    request.add_header("Accept", "application/json, application/jwt")
    request.add_header("User-Agent", "compte-unique-metropolitain (FranceConnect RP)")
    if body is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with open_without_redirects(request, timeout=config.timeout) as response:
            payload = response.read(MAX_RESPONSE_BYTES + 1)
            status = response.status
            content_type = response.headers.get("Content-Type", "")
    except HTTPError as exc:
        payload = exc.read(MAX_RESPONSE_BYTES + 1) if exc.fp is not None else b""
        status = exc.code
        content_type = exc.headers.get("Content-Type", "") if exc.headers else ""
    except (URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise UpstreamUnavailable(detail=f"{method} {urlsplit(url).path}: {type(exc).__name__}") from exc
    if len(payload) > MAX_RESPONSE_BYTES:
        raise VerificationFailed("bad_response", "response too large")
    if status >= 500:
        raise UpstreamUnavailable(detail=f"{method} {urlsplit(url).path}: HTTP {status}")
    return _Response(status=status, content_type=content_type.split(";")[0].strip().lower(), body=payload)


# --- discovery and keys ---------------------------------------------------------------------------


def _discovery_cache_key(config: Config) -> str:
    return "franceconnect:discovery:" + hashlib.sha256(config.issuer.encode()).hexdigest()[:32]


def _jwks_cache_key(provider: Provider) -> str:
    return "franceconnect:jwks:" + hashlib.sha256(provider.jwks_uri.encode()).hexdigest()[:32]


def discover(config: Config) -> Provider:
    """The upstream's metadata, from cache or from its discovery document."""
    key = _discovery_cache_key(config)
    cached = cache.get(key)
    if isinstance(cached, dict):
        return Provider(
            **{**cached, "token_endpoint_auth_methods": tuple(cached["token_endpoint_auth_methods"])}
        )
    _check_url(config.issuer, what="FRANCECONNECT_ISSUER")
    if cache.get(key + ":down"):
        raise UpstreamUnavailable(detail="discovery failed moments ago")
    try:
        response = _http(config, "GET", config.issuer + "/.well-known/openid-configuration")
        if response.status != 200:
            raise UpstreamUnavailable(detail=f"discovery: HTTP {response.status}")
    except UpstreamUnavailable:
        cache.set(key + ":down", 1, UNAVAILABLE_BACKOFF_SECONDS)
        raise
    document = response.json()
    if not isinstance(document, dict):
        raise VerificationFailed("bad_discovery", "not an object")
    if document.get("issuer") != config.issuer:
        raise VerificationFailed("bad_discovery", "issuer differs from FRANCECONNECT_ISSUER")
    try:
        provider = Provider(
            issuer=document["issuer"],
            authorization_endpoint=_check_url(
                document["authorization_endpoint"], what="authorization_endpoint"
            ),
            token_endpoint=_check_url(document["token_endpoint"], what="token_endpoint"),
            userinfo_endpoint=_check_url(document["userinfo_endpoint"], what="userinfo_endpoint"),
            jwks_uri=_check_url(document["jwks_uri"], what="jwks_uri"),
            end_session_endpoint=(
                _check_url(document["end_session_endpoint"], what="end_session_endpoint")
                if document.get("end_session_endpoint")
                else ""
            ),
            token_endpoint_auth_methods=tuple(
                str(method) for method in document.get("token_endpoint_auth_methods_supported") or ()
            ),
        )
    except (KeyError, TypeError) as exc:
        raise VerificationFailed("bad_discovery", "a required endpoint is missing") from exc
    cache.set(
        key,
        {**provider.__dict__, "token_endpoint_auth_methods": list(provider.token_endpoint_auth_methods)},
        config.discovery_cache_seconds,
    )
    return provider


def _fetch_jwks(config: Config, provider: Provider) -> jwk.JWKSet:
    response = _http(config, "GET", provider.jwks_uri)
    if response.status != 200:
        raise UpstreamUnavailable(detail=f"jwks: HTTP {response.status}")
    try:
        keys = jwk.JWKSet.from_json(response.body.decode("utf-8"))
    except (JWException, ValueError, UnicodeDecodeError) as exc:
        raise VerificationFailed("bad_jwks", "unreadable JWKS") from exc
    cache.set(_jwks_cache_key(provider), response.body.decode("utf-8"), JWKS_CACHE_SECONDS)
    return keys


def _jwks(config: Config, provider: Provider, *, refresh: bool = False) -> jwk.JWKSet:
    key = _jwks_cache_key(provider)
    # An unknown kid may mean a rotation: refetch, but not on every forged token.
    if refresh and cache.add(key + ":refreshed", 1, JWKS_REFRESH_MIN_INTERVAL):
        return _fetch_jwks(config, provider)
    cached = cache.get(key)
    if isinstance(cached, str):
        return jwk.JWKSet.from_json(cached)
    return _fetch_jwks(config, provider)


def clear_caches(config: Config | None = None) -> None:
    """Forget the cached discovery document and keys (tests, operator after a change)."""
    config = config or Config.from_settings()
    key = _discovery_cache_key(config)
    cached = cache.get(key)
    if isinstance(cached, dict) and cached.get("jwks_uri"):
        jwks_key = "franceconnect:jwks:" + hashlib.sha256(cached["jwks_uri"].encode()).hexdigest()[:32]
        cache.delete_many([jwks_key, jwks_key + ":refreshed"])
    cache.delete_many([key, key + ":down"])


# --- JWS verification ----------------------------------------------------------------------------


def _b64url_json(segment: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationFailed("malformed", "not a JWT") from exc


def _key_fits(key: jwk.JWK, alg: str) -> bool:
    kty = key.get("kty")
    if key.get("use") not in (None, "sig"):
        return False
    if key.get("alg") not in (None, alg):
        return False
    if alg == "ES256":
        return kty == "EC" and key.get("crv") == "P-256"
    return kty == "RSA"


def verify_jws(config: Config, provider: Provider, token: str, *, what: str) -> dict[str, Any]:
    """The claims of a compact JWS signed by the upstream with ES256 or RS256, else an error.

    The algorithm comes from an allow-list and the key must match it, so a token whose
    header says HS256 (the RSA public key used as an HMAC secret) or `none` never verifies.
    """
    if not isinstance(token, str) or not token:
        raise VerificationFailed(f"{what}_missing")
    parts = token.split(".")
    if len(parts) == 5:
        raise VerificationFailed(f"{what}_encrypted", "encrypted JWTs are not supported")
    if len(parts) != 3:
        raise VerificationFailed(f"{what}_malformed")
    header = _b64url_json(parts[0])
    if not isinstance(header, dict):
        raise VerificationFailed(f"{what}_malformed")
    alg = header.get("alg")
    if alg not in ALLOWED_ALGS:
        raise VerificationFailed(f"{what}_alg", f"alg {str(alg)[:20]!r} refused")
    kid = header.get("kid")

    def candidates(keys: jwk.JWKSet) -> list[jwk.JWK]:
        found = [key for key in keys["keys"] if _key_fits(key, alg)]
        if kid is not None:
            found = [key for key in found if key.get("kid") == kid]
        return found

    keys = candidates(_jwks(config, provider))
    if not keys:
        keys = candidates(_jwks(config, provider, refresh=True))
    if not keys:
        raise VerificationFailed(f"{what}_signature", "no upstream key for this token")
    for key in keys:
        verifier = jws.JWS()
        verifier.allowed_algs = [alg]
        try:
            verifier.deserialize(token)
            verifier.verify(key, alg=alg)
        except (JWException, ValueError, TypeError):
            continue
        claims = _payload_json(verifier.payload)
        if not isinstance(claims, dict):
            raise VerificationFailed(f"{what}_malformed")
        return claims
    raise VerificationFailed(f"{what}_signature", "bad signature")


def _payload_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationFailed("malformed", "payload is not JSON") from exc


def _audience_ok(claims: dict[str, Any], client_id: str) -> bool:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        return False
    if len(audiences) > 1 and claims.get("azp") != client_id:
        return False
    return not ("azp" in claims and claims["azp"] != client_id)


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def acr_satisfies(returned: Any, requested: str) -> bool:
    """eidas1 < eidas2 < eidas3; an unknown or missing level satisfies nothing."""
    if returned not in ACR_LEVELS or requested not in ACR_LEVELS:
        return False
    return ACR_LEVELS.index(returned) >= ACR_LEVELS.index(requested)


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def verify_id_token(
    config: Config,
    provider: Provider,
    raw: str,
    *,
    nonce: str,
    access_token: str = "",
    now: float | None = None,
) -> dict[str, Any]:
    claims = verify_jws(config, provider, raw, what="id_token")
    now = time.time() if now is None else now
    if claims.get("iss") != provider.issuer:
        raise VerificationFailed("id_token_iss")
    if not _audience_ok(claims, config.client_id):
        raise VerificationFailed("id_token_aud")
    exp = _number(claims, "exp")
    if exp is None or exp + LEEWAY_SECONDS < now:
        raise VerificationFailed("id_token_expired")
    iat = _number(claims, "iat")
    if iat is None or iat - LEEWAY_SECONDS > now or iat + ID_TOKEN_MAX_AGE_SECONDS < now:
        raise VerificationFailed("id_token_iat")
    received_nonce = claims.get("nonce")
    if not isinstance(received_nonce, str) or not hmac.compare_digest(
        received_nonce.encode("utf-8", "replace"), nonce.encode("utf-8", "replace")
    ):
        raise VerificationFailed("id_token_nonce")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise VerificationFailed("id_token_sub")
    if not acr_satisfies(claims.get("acr"), config.acr):
        raise VerificationFailed("acr_too_low")
    if "at_hash" in claims and access_token and claims["at_hash"] != _at_hash(access_token):
        raise VerificationFailed("id_token_at_hash")
    return claims


def verify_userinfo(
    config: Config, provider: Provider, response: _Response, *, sub: str, now: float | None = None
) -> dict[str, Any]:
    if response.content_type != "application/jwt":
        raise VerificationFailed("userinfo_unsigned", f"content type {response.content_type[:40]!r}")
    try:
        raw = response.body.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise VerificationFailed("userinfo_malformed") from exc
    claims = verify_jws(config, provider, raw, what="userinfo")
    if claims.get("sub") != sub:
        raise VerificationFailed("userinfo_sub")
    if "iss" in claims and claims["iss"] != provider.issuer:
        raise VerificationFailed("userinfo_iss")
    if "aud" in claims and not _audience_ok(claims, config.client_id):
        raise VerificationFailed("userinfo_aud")
    now = time.time() if now is None else now
    exp = _number(claims, "exp")
    if "exp" in claims and (exp is None or exp + LEEWAY_SECONDS < now):
        raise VerificationFailed("userinfo_expired")
    return claims


# --- the flow -------------------------------------------------------------------------------------


def authorization_url(
    config: Config, provider: Provider, *, redirect_uri: str, state: str, nonce: str
) -> str:
    """Where to send the browser. `claims` asks for `amr` in the ID token: FranceConnect only
    includes it when asked."""
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(config.scopes),
        "state": state,
        "nonce": nonce,
        "acr_values": config.acr,
        "claims": json.dumps({"id_token": {"amr": {"essential": True}}}, separators=(",", ":")),
    }
    if config.prompt:
        params["prompt"] = config.prompt
    separator = "&" if "?" in provider.authorization_endpoint else "?"
    return provider.authorization_endpoint + separator + urlencode(params)


def _exchange_code(config: Config, provider: Provider, *, code: str, redirect_uri: str) -> tuple[str, str]:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    headers: dict[str, str] = {}
    if provider.token_auth_method == "client_secret_post":
        data.update(client_id=config.client_id, client_secret=config.client_secret)
    else:
        raw = f"{quote(config.client_id, safe='')}:{quote(config.client_secret, safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    response = _http(config, "POST", provider.token_endpoint, data=data, headers=headers)
    if response.status != 200:
        error = ""
        try:
            body = response.json()
            error = str(body.get("error", ""))[:40] if isinstance(body, dict) else ""
        except VerificationFailed:
            pass
        raise VerificationFailed("token_refused", f"HTTP {response.status} {error}")
    body = response.json()
    if not isinstance(body, dict):
        raise VerificationFailed("token_malformed")
    id_token = body.get("id_token")
    access_token = body.get("access_token")
    if not isinstance(id_token, str) or not isinstance(access_token, str) or not access_token:
        raise VerificationFailed("token_malformed", "id_token or access_token missing")
    if str(body.get("token_type", "")).lower() != "bearer":
        raise VerificationFailed("token_malformed", "token_type is not Bearer")
    return id_token, access_token


def authenticate(config: Config, *, code: str, redirect_uri: str, nonce: str) -> Authentication:
    """Exchange the code, verify the ID token and the signed userinfo; return who signed in."""
    config.require_credentials()
    provider = discover(config)
    if not code or len(code) > 2048:
        raise VerificationFailed("code_missing")
    id_token, access_token = _exchange_code(config, provider, code=code, redirect_uri=redirect_uri)
    claims = verify_id_token(config, provider, id_token, nonce=nonce, access_token=access_token)
    response = _http(
        config, "GET", provider.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
    )
    if response.status != 200:
        raise VerificationFailed("userinfo_refused", f"HTTP {response.status}")
    userinfo = verify_userinfo(config, provider, response, sub=claims["sub"])

    def text(name: str, limit: int = 150) -> str:
        value = userinfo.get(name)
        return value.strip()[:limit] if isinstance(value, str) else ""

    identity = PivotIdentity(
        given_name=text("given_name"),
        family_name=text("family_name"),
        preferred_username=text("preferred_username"),
        birthdate=text("birthdate", 10),
        gender=text("gender", 20),
        birthplace=text("birthplace", 5),
        birthcountry=text("birthcountry", 5),
        email=text("email", 254),
    )
    amr = claims.get("amr")
    amr_values = tuple(
        value
        for value in (amr if isinstance(amr, list) else [])
        if isinstance(value, str) and value.isalnum()
    )[:8]
    sid = claims.get("sid")
    return Authentication(
        sub=claims["sub"],
        acr=claims["acr"],
        amr=tuple(value[:20] for value in amr_values),
        id_token=id_token,
        identity=identity,
        upstream_sid=sid[:255] if isinstance(sid, str) else "",
        claims_received=tuple(sorted(name for name in userinfo if name in (*PIVOT_CLAIMS, "email"))),
    )


def end_session_url(
    config: Config, provider: Provider, *, id_token: str, state: str, post_logout_redirect_uri: str
) -> str:
    if not provider.end_session_endpoint:
        raise VerificationFailed("no_end_session", "the upstream has no end_session_endpoint")
    params = {"id_token_hint": id_token, "state": state, "post_logout_redirect_uri": post_logout_redirect_uri}
    separator = "&" if "?" in provider.end_session_endpoint else "?"
    return provider.end_session_endpoint + separator + urlencode(params)
