"""Bearer authentication of partner back-ends on the profiles API (RFC 6750 §2.1).

The token is a resident's access token issued to the partner; profiles.partner_tokens
asks the protocol layer to read it. A request without an `Authorization: Bearer` header is
not authenticated by this class (the view decides whether that is allowed); a bad, expired,
revoked or foreign token is refused with 401 and `WWW-Authenticate: Bearer … invalid_token`,
as an RFC 7807 problem `urn:cum:problem:invalid_token` (common.problems.drf_exception_handler).
Tokens in the query string are refused: they end up in logs.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from profiles.partner_tokens import PartnerToken, partner_token_read

REALM = 'Bearer realm="profiles"'


class InvalidToken(exceptions.AuthenticationFailed):
    default_detail = _("Jeton d'accès invalide")
    problem_type = "urn:cum:problem:invalid_token"
    problem_extra = {"code": "invalid_token"}


class InvalidRequest(exceptions.ParseError):
    default_detail = _("Requête invalide")
    problem_type = "urn:cum:problem:invalid_request"
    problem_extra = {"code": "invalid_request"}


def bearer_value(request: Request) -> str | None:
    """The bearer credentials of the Authorization header ("" when empty), None without one."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _sep, value = header.partition(" ")
    if not header or scheme.lower() != "bearer":
        return None
    return value.strip()


class PartnerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, PartnerToken] | None:
        if "access_token" in request.query_params:
            raise InvalidRequest("Access tokens are not accepted in the URI query string.")
        raw = bearer_value(request)
        if raw is None:
            return None
        token = partner_token_read(raw) if raw else None
        if token is None:
            raise InvalidToken("The access token is invalid, expired or revoked.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        if bearer_value(request) is not None:
            return f'{REALM}, error="invalid_token"'
        return REALM


class PartnerTokenScheme(OpenApiAuthenticationExtension):
    """How PartnerTokenAuthentication appears in the OpenAPI description (drf-spectacular)."""

    target_class = "profiles.api.auth.PartnerTokenAuthentication"
    name = "partnerAccessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A resident's access token (RFC 9068 JWT) issued to the calling partner "
            "by this provider's token endpoint; sent by the partner's back-end only.",
        }
