"""Token introspection (RFC 7662), for clients registered as resource servers.

RFC 7662 §4: a token is described only to those it is meant for. An access token: to the
client it was issued to, or to a resource server named in its `aud` (its registered
`resource_identifier`, asked by the client as an RFC 8707 `resource`:
identity/oidc/resources.py). A refresh token: to its own client only. To any other caller,
`{"active": false}`, exactly as for an unknown token.

A DPoP-bound access token (RFC 9449 §6.2) is described with `token_type: "DPoP"` and its
`cnf: {"jkt": ...}`: the resource server checks the proof it received against that key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from identity.oidc.access_tokens import decode, live_token
from identity.oidc.client_auth import authenticate_presented
from identity.oidc.dpop import bound_jkt
from identity.oidc.errors import constant_headers, json_answer, json_error
from identity.oidc.resources import meant_for
from identity.oidc.subjects import subject_for

# Client-authentication parameters (RFC 6749 §2.3.1, RFC 7523 §2.2): in the body only.
_CREDENTIAL_PARAMETERS = ("client_id", "client_secret", "client_assertion", "client_assertion_type")
_NO_STORE = constant_headers(("Cache-Control", "no-store"))


class IntrospectView(View):
    http_method_names = ["post"]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # Exempt once, not per request (method_decorator wraps dispatch at every call).
        return csrf_exempt(super().as_view(**initkwargs))

    def post(self, request: HttpRequest) -> HttpResponse:
        outcome = introspection_outcome(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        return json_answer(outcome, _NO_STORE)

    @staticmethod
    def _describe(token: str, hint: str, caller: Any) -> dict[str, object]:
        claims = decode(token, verify=False)
        if claims is not None:
            # One of our JWT access tokens (RFC 9068), whatever the hint says.
            return IntrospectView._describe_jwt(token, claims, caller)
        checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
        order = (
            ("refresh_token", "access_token")
            if hint == "refresh_token"
            else ("access_token", "refresh_token")
        )
        for kind in order:
            if kind == "access_token":
                access = (
                    get_access_token_model()
                    .objects.select_related("user", "application")
                    .filter(token_checksum=checksum)
                    .first()
                )
                if access is not None:
                    if not access.is_valid() or (access.user and not access.user.is_active):
                        return {"active": False}
                    if access.application_id != caller.pk and not meant_for(access.resource, caller):
                        return {"active": False}
                    data: dict[str, object] = {
                        "active": True,
                        "token_type": "Bearer",
                        "scope": access.scope,
                        "exp": int(access.expires.timestamp()),
                        "iat": int(access.created.timestamp()),
                        "iss": settings.ISSUER,
                    }
                    if access.application:
                        data["client_id"] = access.application.client_id
                    if access.user:
                        # As the client the token was issued to knows the resident.
                        data["sub"] = subject_for(access.application, access.user)
                    return data
            else:
                refresh = (
                    get_refresh_token_model()
                    .objects.select_related("user", "application", "access_token")
                    .filter(token_checksum=checksum, revoked__isnull=True)
                    .first()
                )
                if refresh is not None and refresh.user.is_active:
                    if refresh.application_id != caller.pk:
                        return {"active": False}  # a refresh token is its own client's only
                    return {
                        "active": True,
                        "token_type": "refresh_token",
                        "scope": refresh.access_token.scope if refresh.access_token else "",
                        "client_id": refresh.application.client_id,
                        "sub": subject_for(refresh.application, refresh.user),
                        "iss": settings.ISSUER,
                    }
        return {"active": False}

    @staticmethod
    def _describe_jwt(token: str, claims: dict[str, Any], caller: Any) -> dict[str, object]:
        live = live_token(token, claims)  # revoked, expired, or the resident deactivated: None
        if live is None:
            return {"active": False}
        claims, user = live  # authenticated: its row (resident) or its signature (client)
        if claims["client_id"] != caller.client_id and not meant_for(claims.get("aud"), caller):
            return {"active": False}
        data: dict[str, object] = {
            "active": True,
            "token_type": "Bearer",
            "scope": claims["scope"],
            "client_id": claims["client_id"],
            "exp": claims["exp"],
            "iat": claims.get("iat"),
            "iss": claims["iss"],
            "aud": claims.get("aud"),
            "jti": claims["jti"],
        }
        if user is not None:
            # As the client the token was issued to knows the resident (pairwise).
            data["sub"] = claims["sub"]
        jkt = bound_jkt(claims)
        if jkt is not None:
            # RFC 9449 §6.2: the resource server checks the request's proof against this key
            # (identity/oidc/dpop_resource.py); no proof is asked of the introspecting caller.
            data["token_type"] = "DPoP"
            data["cnf"] = {"jkt": jkt}
        return data


def introspection_outcome(request: HttpRequest) -> dict[str, object] | HttpResponse:
    """What introspection answers this POST: the token's description (a 200) or the error
    response. The view and the bearer path before Django's request cycle
    (config/bearer_path.py) both call it."""
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    basic = authorization.startswith("Basic ")
    challenge = {"WWW-Authenticate": 'Basic realm="introspect"'} if basic else None
    form = request.POST
    if basic and "client_secret" in form:
        # RFC 6749 §2.3: one authentication method per request.
        return json_error("invalid_request", "Use one client authentication method.", 400)
    if request.META.get("QUERY_STRING") and any(name in request.GET for name in _CREDENTIAL_PARAMETERS):
        # RFC 6749 §2.3.1: client credentials never travel in the request URI.
        description = "Client credentials are not accepted in the URI query string."
        return json_error("invalid_request", description, 400)
    # The client that authenticated itself (identity/oidc/client_auth.py): not the one
    # named in the Authorization header, which may have failed while the body's succeeded.
    client = authenticate_presented(authorization, form)
    if client is None:
        return json_error("invalid_client", "Client authentication failed.", 401, challenge)
    if client.client_type != "confidential" or not client.is_resource_server:
        return json_error("unauthorized_client", "This client may not introspect tokens.", 403)
    token = form.get("token")
    if not token:
        return json_error("invalid_request", "The token parameter is required.")
    return IntrospectView._describe(token, form.get("token_type_hint", ""), client)
