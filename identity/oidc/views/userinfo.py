"""UserInfo endpoint (OpenID Connect Core 1.0 §5.3), by GET and POST.

The access token is accepted in the Authorization header (RFC 6750 §2.1) and, on POST,
as a form-encoded body parameter (§2.2; OIDC certification `oidcc-userinfo-post-body`),
never in the URI query string (§2.3; RFC 9700 §4.3.2), and never by two methods at once.

The token is one of our RFC 9068 JWTs (identity/oidc/access_tokens.py): its form,
issuer, expiry and audience are checked without the database, then one indexed read of
its SHA-256 proves we issued exactly this string, that it was not revoked, and finds the
(active) resident; the consent ledger then decides which claims beyond `sub` are
released (identity/oidc/sharing.py), and the registered claim providers supply them
(identity/oidc/claims/). That read also carries the ledger's answer (consent.gate
.account_gate_sql) and the resident's columns every provider reads from the `User` row
(ClaimProvider.user_fields): with the standard provider, userinfo is one SQL statement.
Nothing is written.

Errors (RFC 6750 §3): no token → 401 with a bare `Bearer` challenge; a malformed
request → 400 invalid_request; a bad, expired, revoked or foreign token → 401
invalid_token; a token without the `openid` scope → 403 insufficient_scope.

DPoP (RFC 9449 §7): a token bound to a key (`cnf.jkt`) is accepted only as
`Authorization: DPoP <token>` with a proof by that key for this request (`htm`, `htu`,
`ath`, `iat`, nonce, jti not seen before: identity/oidc/dpop.py); as Bearer it is an
invalid_token, and so is an unbound token sent with the DPoP scheme. Those answers carry a
`DPoP` challenge listing the algorithms we accept (`algs`), the bare 401 both challenges.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from common import request_log
from identity.client_cache import client_by_client_id
from identity.oidc.access_tokens import decode, is_client_token, resident_and_consent, resident_of
from identity.oidc.dpop import (
    DPoPError,
    Proof,
    add_fresh_nonce,
    bound_jkt,
    check_request_proof,
    dpop_challenge,
    resource_error,
)
from identity.oidc.errors import constant_headers, json_answer, json_error
from identity.oidc.sharing import known_purpose_code, released_claims

REALM = 'Bearer realm="userinfo"'
_NO_STORE = constant_headers(("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def _challenge(error: str, description: str, status: int, extra: str = "") -> HttpResponse:
    header = f'{REALM}, error="{error}", error_description="{description}"{extra}'
    return json_error(error, description, status, {"WWW-Authenticate": header})


def _invalid_token() -> HttpResponse:
    return _challenge("invalid_token", "The access token is invalid, expired or revoked.", 401)


def bearer_token(request: HttpRequest) -> tuple[str | None, HttpResponse | None]:
    """(token, None) or (None, the error response) per RFC 6750 §2."""
    token, _scheme, problem = presented_token(request)
    return token, problem


def presented_token(request: HttpRequest) -> tuple[str | None, str, HttpResponse | None]:
    """(token, scheme, None) or (None, "", the error response): RFC 6750 §2, and the DPoP
    scheme (RFC 9449 §7.1). `scheme` is "bearer" (header or body) or "dpop"."""
    if request.META.get("QUERY_STRING") and "access_token" in request.GET:
        description = "Access tokens are not accepted in the URI query string."
        return None, "", _challenge("invalid_request", description, 400)
    header = request.META.get("HTTP_AUTHORIZATION", "")
    from_header = None
    header_scheme = "bearer"
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "dpop"):
            header_scheme = scheme.lower()
            from_header = value.strip()
            if not from_header:
                return None, "", _challenge("invalid_request", f"The {scheme} credentials are empty.", 400)
    from_body = None
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        from_body = request.POST.get("access_token") or None
    if from_header and from_body:
        return None, "", _challenge("invalid_request", "Send the access token by one method only.", 400)
    token = from_header or from_body
    if not token:
        # RFC 6750 §3.1: no error code when the request carried no authentication at all;
        # RFC 9449 §7.1: the DPoP challenge too, with the algorithms we accept.
        response = HttpResponse(status=401)
        response["WWW-Authenticate"] = f"{REALM}, {dpop_challenge()}"
        response["Cache-Control"] = "no-store"
        return None, "", response
    return token, (header_scheme if from_header else "bearer"), None


def _dpop_binding(request: HttpRequest, token: str, scheme: str, claims: dict) -> Proof | HttpResponse | None:
    """RFC 9449 §7: the proof of a bound token (or the refusal); None for an unbound Bearer token."""
    jkt = bound_jkt(claims)
    if jkt is None:
        if scheme == "dpop":
            return resource_error(DPoPError("invalid_token", "This access token is not DPoP-bound."))
        return None
    if scheme != "dpop":
        description = "This access token is DPoP-bound: use the DPoP scheme."
        return resource_error(DPoPError("invalid_token", description))
    try:
        proof = check_request_proof(request, access_token=token)
    except DPoPError as exc:
        return resource_error(exc)
    if proof.jkt != jkt:
        return resource_error(DPoPError("invalid_dpop_proof", "The proof is signed by another key."))
    return proof


def _audience_includes_us(claims: dict) -> bool:
    audience = claims.get("aud")
    values = audience if isinstance(audience, list) else [audience]
    return settings.ISSUER in values


class UserInfoView(View):
    http_method_names = ["get", "post"]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # Exempt once, not per request (method_decorator wraps dispatch at every call).
        return csrf_exempt(super().as_view(**initkwargs))

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._userinfo(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        return self._userinfo(request)

    def _userinfo(self, request: HttpRequest) -> HttpResponse:
        outcome = userinfo_outcome(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        released, proof = outcome
        response = json_answer(released, _NO_STORE)
        add_fresh_nonce(response, proof)
        return response


def userinfo_outcome(request: HttpRequest) -> tuple[dict[str, Any], Proof | None] | HttpResponse:
    """What userinfo answers this request: the claims released with the DPoP proof checked
    (None for a Bearer token), or the error response. The view and the bearer path before
    Django's request cycle (config/bearer_path.py) both call it."""
    token, scheme, problem = presented_token(request)
    if problem is not None:
        return problem
    assert token is not None  # presented_token gives the token or the error response
    claims = decode(token, verify=False)
    if claims is None or is_client_token(claims) or not _audience_includes_us(claims):
        return _invalid_token()  # not ours, expired, another resource's, or a client's own
    proof = _dpop_binding(request, token, scheme, claims)
    if isinstance(proof, HttpResponse):
        return proof
    client = client_by_client_id(claims["client_id"])
    if client is None:
        return _invalid_token()
    request_log.set_client_id(client.client_id)  # the request's access line
    scopes = claims["scope"].split()
    # The resident and the ledger's answer for this sharing in one read, when this
    # process already knows the sharing's purpose; that read also proves the token is
    # ours and live (access_tokens.live_token). Otherwise the ledger is asked once the
    # token is proven, since finding the purpose may create it.
    purpose_code = known_purpose_code(client, scopes) if set(scopes) - {"openid"} else None
    granted: bool | None = None
    if purpose_code is None:
        user = resident_of(token, claims)
    else:
        user, granted = resident_and_consent(token, claims, purpose_code)
    if user is None:
        return _invalid_token()
    if "openid" not in scopes:
        return _challenge(
            "insufficient_scope",
            "The access token was not granted the openid scope.",
            403,
            ', scope="openid"',
        )
    return released_claims(client, user, scopes, granted=granted), proof
