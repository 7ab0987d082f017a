"""Discovery (OpenID Connect Discovery 1.0 §3) and RFC 8414 metadata.

`scopes_supported` and `claims_supported` come from the claims registry
(identity/oidc/claims/): a registered provider's scopes and claims appear here.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from identity.keys import strong_etag
from identity.levels import ACR_VALUES_SUPPORTED
from identity.oidc import claims as claims_registry
from identity.oidc.constants import CLIENT_ASSERTION_ALGS
from identity.oidc.dpop_resource import ALGORITHMS as DPOP_ALGORITHMS
from identity.oidc.views.documents import document_response

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
# Claims of the ID token itself, whatever the scopes (OIDC Core §2).
ID_TOKEN_CLAIMS = ("iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "acr", "amr")


def _url(name: str) -> str:
    return settings.ISSUER + reverse(name)


def provider_metadata() -> dict[str, object]:
    claims = sorted({*claims_registry.supported_claims(), *ID_TOKEN_CLAIMS})
    return {
        "issuer": settings.ISSUER,
        "authorization_endpoint": _url("oidc:authorize"),
        "token_endpoint": _url("oidc:token"),
        "userinfo_endpoint": _url("oidc:userinfo"),
        "jwks_uri": _url("oidc:jwks"),
        "revocation_endpoint": _url("oidc:revoke"),
        "introspection_endpoint": _url("oidc:introspect"),
        "end_session_endpoint": _url("oidc:end-session"),
        "pushed_authorization_request_endpoint": _url("oidc:par"),
        # RFC 9126 §5: not for every client; clients registered with require_par must.
        "require_pushed_authorization_requests": False,
        "scopes_supported": list(claims_registry.supported_scopes()),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "acr_values_supported": list(ACR_VALUES_SUPPORTED),
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),  # RFC 9449 §5.1
        "claims_supported": claims,
        "claim_types_supported": ["normal"],
        "prompt_values_supported": ["none", "login", "consent", "create"],
        "display_values_supported": ["page", "popup"],
        "ui_locales_supported": ["fr", "en"],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": True,
        "authorization_response_iss_parameter_supported": True,
        # OpenID Connect Back-Channel Logout 1.0 §2.1 and Front-Channel Logout 1.0 §3.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
        "service_documentation": settings.ISSUER + "/docs/partners",
    }


# The document depends only on settings, the URLconf and the claims registry: built once
# per process (per issuer, so that a test overriding the issuer still sees its own, and per
# registry generation, so that a provider registered later is listed).
# The bytes and their ETag, under that key.
_document_bytes: dict[tuple[str, int], tuple[bytes, str]] = {}
# The document changes only with a deployment (settings, code): relying parties may keep it
# five minutes, then revalidate it with If-None-Match (a 304 costs them nothing).
MAX_AGE_SECONDS = 300


def metadata_bytes() -> tuple[bytes, str]:
    """The serialized metadata document and its strong ETag."""
    key = (settings.ISSUER, claims_registry.generation())
    cached = _document_bytes.get(key)
    if cached is None:
        body = json.dumps(provider_metadata(), cls=DjangoJSONEncoder).encode()
        cached = (body, strong_etag(body))
        _document_bytes.clear()
        _document_bytes[key] = cached
    return cached


def _json(request: HttpRequest) -> HttpResponse:
    body, etag = metadata_bytes()
    return document_response(request, body=body, etag=etag, max_age=MAX_AGE_SECONDS)


@require_safe
def openid_configuration(request: HttpRequest) -> HttpResponse:
    return _json(request)


@require_safe
def oauth_authorization_server(request: HttpRequest) -> HttpResponse:
    return _json(request)
