"""The authorization code of a request validated in this same request, without oauthlib.

django-oauth-toolkit's `create_authorization_response` builds a new oauthlib request from
the HTTP request and the credentials, validates it a second time (client, redirect URI,
response type, PKCE, scopes, resource, `dpop_jkt`, OpenID checks: what the authorization
endpoint's `_validate` decided a moment earlier in the same request), then writes the code
and puts the redirect together. `issue_validated_code` does only the last two steps, the
same way:

- the code: `oauthlib.common.generate_token()`, as oauthlib's `create_authorization_code`;
- the row: the validator's own `_create_authorization_code` (the one INSERT that
  `save_authorization_code` runs), given the values oauthlib's request would carry —
  the client, the resident, the credentials (redirect URI, PKCE challenge, nonce, claims,
  resource, `dpop_jkt`, authentication time, session, acr/amr) and the scopes;
- the redirect: `code` then `state` (when there is one) added by oauthlib's
  `add_params_to_uri`, in the fragment only when the URL of the HTTP request itself says
  `response_mode=fragment` (what oauthlib reads: it is not part of the credentials), then
  RFC 9207's `iss` by django-oauth-toolkit's own function.

Only for the authorization endpoint itself, once its checks passed in this request: the
pages that resume a request later (consent decision, internal-service notice) still go
through oauthlib, which validates the credentials they kept. Requests without the `openid`
scope (whose nonce and claims oauthlib would read from the URL rather than the
credentials) go through oauthlib too. settings.AUTHORIZE_ISSUANCE = "oauthlib" sends every
request there (the reference: tests/oidc/test_authorize_differential.py compares both).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from oauth2_provider.oauth2_backends import _add_iss_to_redirect
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import add_params_to_uri, generate_token

from identity.oidc.constants import PKCE_METHOD


def direct_issuance(scopes: list[str], credentials: dict[str, Any]) -> bool:
    """Whether this validated request's code can be issued here rather than by oauthlib."""
    return (
        getattr(settings, "AUTHORIZE_ISSUANCE", "native") != "oauthlib"
        and "openid" in scopes
        and credentials.get("response_type") == "code"
        and credentials.get("code_challenge_method") == PKCE_METHOD
        and bool(credentials.get("code_challenge"))
    )


def _response_mode(request: HttpRequest) -> str | None:
    """`response_mode` as oauthlib's request sees it: django-oauth-toolkit hands it the URL
    (its query string, last value) and no body, so a POSTed or pushed value is not seen."""
    return request.GET.get("response_mode")


def issue_validated_code(
    request: HttpRequest, client: Any, scopes: list[str], credentials: dict[str, Any]
) -> str:
    """Write the code of an authorization request validated in this request; its redirect URI."""
    code = generate_token()
    carried = SimpleNamespace(
        client=client,
        user=request.user,
        redirect_uri=credentials["redirect_uri"],
        scopes=scopes,
        code_challenge=credentials.get("code_challenge"),
        code_challenge_method=credentials.get("code_challenge_method"),
        nonce=credentials.get("nonce"),
        claims=credentials.get("claims"),
        auth_time=credentials.get("auth_time"),
        cum_sid=credentials.get("cum_sid"),
        cum_acr=credentials.get("cum_acr"),
        cum_amr=credentials.get("cum_amr"),
        resource=credentials.get("resource"),
        dpop_jkt=credentials.get("dpop_jkt"),
    )
    oauth2_settings.OAUTH2_VALIDATOR_CLASS()._create_authorization_code(carried, {"code": code})
    items = [("code", code)]
    state = credentials.get("state")
    if state:
        items.append(("state", state))
    uri = add_params_to_uri(
        credentials["redirect_uri"], items, fragment=_response_mode(request) == "fragment"
    )
    if oauth2_settings.COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS:
        uri = _add_iss_to_redirect(uri, oauth2_settings.oauth2_authorization_server_issuer(request))
    return uri
