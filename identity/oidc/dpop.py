"""DPoP (RFC 9449) at our endpoints: proofs, server-provided nonces, the replay cache.

The checks of one proof (RFC 9449 §4.3) are identity/oidc/dpop_resource.verify_proof, the
standalone helper partners' resource servers use too. Here:

- **Where**: the token endpoint (both implementations: identity/oidc/views/token.py checks
  the proof once, before either runs, and hands them the key's thumbprint), PAR
  (identity/oidc/views/par.py, RFC 9449 §10.1) and userinfo (identity/oidc/views/userinfo.py,
  with `ath`). `htu` is compared with `settings.ISSUER` + the request's path (we run behind
  a TLS proxy: the issuer is the URL clients use), normalised.
- **Nonces** (§8, §9): stateless, so that every worker accepts what another issued: the
  nonce is the time step (`DPOP_NONCE_STEP_SECONDS`) and an HMAC of it under a key
  derived from SECRET_KEY; the current and the previous step are accepted. With
  `DPOP_NONCE_REQUIRED` (default on) a proof without a valid nonce is answered
  `use_dpop_nonce` with a fresh `DPoP-Nonce` header (400 at the token endpoint and PAR,
  401 at userinfo); successful answers carry a fresh nonce when the one presented is no
  longer the current one.
- **Replays** (§11.1): the proof's `jti`, per key, is recorded once until the proof is too
  old anyway: Redis `SET NX EX` (Django's cache, when REDIS_URL is set), else a row of
  DPoPProofJti whose unique constraint decides; expired rows are deleted as new ones come.
"""

from __future__ import annotations

import base64
import hmac
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import salted_hmac

from identity.oidc.dpop_resource import ALGORITHMS, DPoPError, Proof, verify_proof
from identity.oidc.models import DPoPProofJti

__all__ = ["ALGORITHMS", "DPoPError", "Proof"]

NONCE_HEADER = "DPoP-Nonce"
# The verified thumbprint handed from the token view to the token endpoint's
# implementations, in request.META under a name no HTTP header can take (those are HTTP_*).
JKT_META = "cum.dpop_jkt"
# ... and in the oauthlib request's headers, which only we fill (oauthlib_core.extract_headers).
JKT_HEADER = "X-Cum-DPoP-JKT"
_NONCE_SALT = "identity.oidc.dpop.nonce"
_CACHE_PREFIX = "dpop-jti:"


# --- nonces ----------------------------------------------------------------------------------


def _step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // settings.DPOP_NONCE_STEP_SECONDS)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _nonce_for(step: int) -> str:
    mac = salted_hmac(_NONCE_SALT, str(step), algorithm="sha256").digest()[:18]
    return _b64(step.to_bytes(8, "big") + mac)


def current_nonce(now: float | None = None) -> str:
    return _nonce_for(_step(now))


def nonce_valid(nonce: str | None, now: float | None = None) -> bool:
    """Issued by any of our workers in the current or the previous time step."""
    if not nonce or len(nonce) > 64:
        return False
    current = _step(now)
    return any(hmac.compare_digest(nonce, _nonce_for(step)) for step in (current, current - 1))


def _nonce_check(nonce: str | None) -> None:
    if nonce is None and not settings.DPOP_NONCE_REQUIRED:
        return
    if not nonce_valid(nonce):
        description = "A DPoP nonce is required." if nonce is None else "The DPoP nonce is stale."
        raise DPoPError("use_dpop_nonce", description)


# --- the replay cache -------------------------------------------------------------------------


def _seen_before(proof: Proof, now: float) -> bool:
    """Record the proof's (key, jti); True when it was already recorded (a replay)."""
    ttl = max(1, proof.expires_at - int(now))
    if settings.REDIS_URL:
        # RedisCache.add is SET NX EX: atomic across every worker.
        return not caches["default"].add(_CACHE_PREFIX + proof.replay_key, 1, timeout=ttl)
    current = datetime.fromtimestamp(now, tz=UTC)
    try:
        with transaction.atomic():
            DPoPProofJti.objects.create(
                jti_hash=proof.replay_key, expires_at=datetime.fromtimestamp(proof.expires_at, tz=UTC)
            )
    except IntegrityError:
        return True
    DPoPProofJti.objects.filter(expires_at__lt=current).delete()
    return False


# --- checking a request's proof ---------------------------------------------------------------


def endpoint_url(request: HttpRequest) -> str:
    """The URL clients address this endpoint by (what `htu` must be)."""
    return settings.ISSUER + request.path_info


def check_request_proof(request: HttpRequest, *, access_token: str | None = None) -> Proof:
    """The request's DPoP proof, every check passed and its jti recorded; DPoPError otherwise."""
    now = time.time()
    proof = verify_proof(
        request.META.get("HTTP_DPOP"),
        method=request.method or "",
        url=endpoint_url(request),
        access_token=access_token,
        max_age=settings.DPOP_PROOF_MAX_AGE_SECONDS,
        leeway=settings.DPOP_PROOF_LEEWAY_SECONDS,
        now=now,
        nonce_check=_nonce_check,
    )
    if _seen_before(proof, now):
        raise DPoPError("invalid_dpop_proof", "This DPoP proof was already used (jti).")
    return proof


def has_proof(request: HttpRequest) -> bool:
    return "HTTP_DPOP" in request.META


def token_request_proof(request: HttpRequest) -> tuple[Proof | None, HttpResponse | None]:
    """At the token endpoint and PAR: (the checked proof or None when there is none, None) or
    (None, the 400 answer when a proof is present and fails)."""
    if not has_proof(request):
        return None, None
    try:
        return check_request_proof(request), None
    except DPoPError as exc:
        return None, token_error(exc)


# --- answers ------------------------------------------------------------------------------------


def add_fresh_nonce(response: HttpResponse, proof: Proof | None) -> None:
    """A successful answer: a fresh nonce when the one presented is not the current one."""
    if proof is None:
        return
    nonce = current_nonce()
    if proof.nonce != nonce:
        response[NONCE_HEADER] = nonce


def token_error(exc: DPoPError) -> HttpResponse:
    """The token endpoint's and PAR's answer (RFC 9449 §5, §8): 400 with the error JSON."""
    response = JsonResponse({"error": exc.error, "error_description": exc.description}, status=400)
    response["Cache-Control"] = "no-store"
    if exc.error == "use_dpop_nonce":
        response[NONCE_HEADER] = current_nonce()
    return response


def dpop_challenge(error: str | None = None, description: str | None = None) -> str:
    """`WWW-Authenticate: DPoP` (RFC 9449 §7.1): the algorithms we take, the error if any."""
    parts = []
    if error:
        parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{description}"')
    parts.append(f'algs="{" ".join(ALGORITHMS)}"')
    return "DPoP " + ", ".join(parts)


def resource_error(exc: DPoPError, status: int = 401) -> HttpResponse:
    """A resource's answer: 401 with a DPoP challenge naming the error (and a nonce)."""
    response = JsonResponse({"error": exc.error, "error_description": exc.description}, status=status)
    response["WWW-Authenticate"] = dpop_challenge(exc.error, exc.description)
    response["Cache-Control"] = "no-store"
    if exc.error == "use_dpop_nonce":
        response[NONCE_HEADER] = current_nonce()
    return response


def bound_jkt(claims: dict[str, Any]) -> str | None:
    """The thumbprint an access token's claims bind it to (`cnf.jkt`), else None."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) and jkt else None
