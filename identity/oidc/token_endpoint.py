"""Our own token endpoint (RFC 6749 §3.2): authorization code, refresh token, client credentials.

The checks, their order and the answers are those of the oauthlib path this replaces
(django-oauth-toolkit's OAuthLibCore → oauthlib's TokenEndpoint, grant types and BearerToken,
with our Validator, identity/oidc/request_validator.py), without oauthlib's request
dispatching, grant-type classes and token handler: parse the form, authenticate the client
exactly as registered, claim the code or the refresh token, sign, store, answer.

Everything that decides is shared with that path, not copied: client authentication
(Validator.authenticate_client, identity/oidc/client_auth.py), the code's atomic claim and
replay revocation (Validator.validate_code), the redirect URI and RFC 8707 resource checks,
refresh-token validation and rotation (Validator.validate_refresh_token, save_bearer_token),
the access token (identity/oidc/access_tokens.generate) and the ID token
(Validator.finalize_id_token). The validator's methods receive an oauthlib Request built
from the form, as they do on the oauthlib path.

The client-credentials grant goes further: no oauthlib Request at all. The client
authenticates through identity/oidc/client_auth.authenticate_presented (the same rules as
the Validator's, read from the header and the form), and its scope, resource and DPoP rules
(Validator.get_default_scopes, validate_scopes, validate_token_resource, validate_token_dpop
for that grant) are applied to the form directly, then the token is signed
(access_tokens.client_token); the errors are oauthlib's classes, with the same bodies
(`state` echoed as oauthlib does).

The oauthlib path stays reachable: settings.TOKEN_ENDPOINT = "oauthlib" (the differential
test, tests/oidc/test_token_differential.py, runs both on the same requests and requires
the same status and error code). Grant types other than these three are refused here with
unsupported_grant_type, as oauthlib's server (identity/oidc/server.py) refuses them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from oauth2_provider.oauth2_validators import GRANT_TYPE_MAPPING
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc6749.utils import is_secure_transport, scope_to_list

from identity.oidc.access_tokens import client_token
from identity.oidc.client_auth import authenticate_presented, basic_credentials
from identity.oidc.dpop import JKT_HEADER, JKT_META
from identity.oidc.request_validator import OAuthRequest, Validator

GRANTS = ("authorization_code", "refresh_token", "client_credentials")
# The request headers the validator reads (as identity/oidc/oauthlib_core.py hands them).
_HEADERS = (
    ("HTTP_AUTHORIZATION", "Authorization"),
    ("CONTENT_TYPE", "Content-Type"),
    ("HTTP_ORIGIN", "Origin"),
)
_JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}

_validator: Validator | None = None


def _the_validator() -> Validator:
    global _validator
    if _validator is None:
        _validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    return _validator


def _generator(value: Any) -> Any:
    return import_string(value) if isinstance(value, str) else value


def _oauth_request(request: HttpRequest) -> OAuthRequest:
    """oauthlib's view of the form, as django-oauth-toolkit builds it: the last value of a
    repeated parameter, except `resource` (RFC 8707: repeatable)."""
    body = [
        (key, value)
        for key, values in request.POST.lists()
        for value in (values if key == "resource" else values[-1:])
    ]
    meta = request.META
    headers = {name: meta[key] for key, name in _HEADERS if key in meta}
    if "Authorization" in headers:
        headers["HTTP_AUTHORIZATION"] = headers["Authorization"]  # django-oauth-toolkit reads this one
    if request.is_secure():
        headers["X_DJANGO_OAUTH_TOOLKIT_SECURE"] = "1"
    if JKT_META in meta:  # the DPoP key the token view verified (identity/oidc/dpop.py)
        headers[JKT_HEADER] = meta[JKT_META]
    oauth = OAuthRequest(request.build_absolute_uri(request.path), "POST", None, headers)
    # Set after construction: oauthlib's constructor would turn a list into a dict (keeping
    # one `resource`); the validator reads the repeated ones from decoded_body.
    oauth.body = oauth.decoded_body = body
    vars(oauth)["_params"].update(body)
    oauth.scopes = scope_to_list(oauth.scope)  # type: ignore[assignment]  # None without scope, as oauthlib
    oauth.extra_credentials = None
    return oauth


def _error_response(exc: errors.OAuth2Error) -> HttpResponse:
    response = HttpResponse(exc.json, status=exc.status_code)
    for name, value in {**_JSON_HEADERS, **exc.headers}.items():
        response[name] = value
    return response


def token_response(request: HttpRequest) -> HttpResponse:
    """The token endpoint's answer to this POST (headers: see identity/oidc/views/token.py)."""
    validator = _the_validator()
    try:
        if request.META.get("QUERY_STRING"):
            raise errors.InvalidRequestError(description="URL query parameters are not allowed")
        if request.POST.get("grant_type") == "client_credentials":  # oauthlib's: the last value
            outcome = client_credentials_outcome(request)
            return outcome if isinstance(outcome, HttpResponse) else _json_response(outcome)
        oauth = _oauth_request(request)
        grant_type = oauth.grant_type
        if grant_type not in GRANTS:
            raise errors.UnsupportedGrantTypeError(request=oauth)
        if grant_type == "authorization_code":
            token = _authorization_code(validator, oauth, request)
        else:
            token = _refresh_token(validator, oauth, request)
    except errors.OAuth2Error as exc:
        return _error_response(exc)
    response = _json_response(token)
    origin = oauth.headers.get("Origin")
    if (
        origin
        and grant_type != "client_credentials"
        and is_secure_transport(origin)
        and validator.is_origin_allowed(oauth.client_id, origin, oauth)
    ):
        response["Access-Control-Allow-Origin"] = origin  # as oauthlib's code and refresh grants do
    return response


def token_body(token: dict[str, Any]) -> bytes:
    """A successful token answer's body (the bearer path, config/bearer_path.py, sends the same)."""
    return json.dumps(token).encode("utf-8")


def _json_response(token: dict[str, Any]) -> HttpResponse:
    # The headers given to the constructor: the same headers, in the same order, as setting
    # them one by one after it (its default text/html Content-Type is then never built).
    return HttpResponse(token_body(token), status=200, headers=_JSON_HEADERS)


# --- client authentication ------------------------------------------------------------------


def _authenticate(
    validator: Validator, oauth: OAuthRequest, request: HttpRequest, *, public_allowed: bool
) -> None:
    """The registered method, exactly (Validator.authenticate_client); a public client by its
    client_id alone where the grant allows one (authorization code, refresh).

    With an `Authorization: Basic` header (how confidential clients authenticate here),
    authentication is required whatever the client (django-oauth-toolkit's
    client_authentication_required answers True at once), and it is decided by
    client_auth.authenticate_presented on the header and the form, the same rules as
    Validator.authenticate_client (as the client-credentials grant does), without the
    oauthlib request's parsing of the header and its attribute lookups.
    """
    authorization = request.META.get("HTTP_AUTHORIZATION")
    if basic_credentials(authorization):  # a non-empty one, as django-oauth-toolkit tests it
        client = authenticate_presented(authorization, request.POST)
        if client is None:
            raise errors.InvalidClientError(request=oauth)
        oauth.client = client
    elif not public_allowed or validator.client_authentication_required(oauth):
        if not validator.authenticate_client(oauth):
            raise errors.InvalidClientError(request=oauth)
    elif not validator.authenticate_client_id(oauth.client_id, oauth):
        raise errors.InvalidClientError(request=oauth)
    if not oauth.client_id:
        oauth.client_id = oauth.client.client_id
    elif oauth.client_id != oauth.client.client_id:
        raise errors.InvalidClientError(request=oauth)
    if not oauth.client.allows_grant_type(*GRANT_TYPE_MAPPING[oauth.grant_type]):
        raise errors.UnauthorizedClientError(request=oauth)


# --- the grants ----------------------------------------------------------------------------------


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _authorization_code(validator: Validator, oauth: OAuthRequest, request: HttpRequest) -> dict[str, Any]:
    code = oauth.code
    if code is None:
        raise errors.InvalidRequestError(description="Missing code parameter.", request=oauth)
    _authenticate(validator, oauth, request, public_allowed=True)
    client_id: str = oauth.client.client_id
    # The atomic claim: a replayed code revokes the token family of its first redemption.
    if not validator.validate_code(client_id, code, oauth.client, oauth):
        raise errors.InvalidGrantError(request=oauth)
    # PKCE (RFC 7636), S256 only: our authorization endpoint records no other method.
    challenge = validator.get_code_challenge(code, oauth)
    verifier = oauth.code_verifier
    if challenge is not None:
        if verifier is None:
            raise errors.MissingCodeVerifierError(request=oauth)
        if validator.get_code_challenge_method(code, oauth) != "S256" or not hmac.compare_digest(
            _s256(verifier), challenge
        ):
            raise errors.InvalidGrantError(request=oauth)
    elif validator.is_pkce_required(oauth.client_id, oauth):
        if verifier is None:
            raise errors.MissingCodeVerifierError(request=oauth)
        raise errors.InvalidGrantError(request=oauth, description="Challenge not found")
    if oauth.redirect_uri is None:
        oauth.using_default_redirect_uri = True
        oauth.redirect_uri = validator.get_default_redirect_uri(oauth.client_id, oauth)
        if not oauth.redirect_uri:
            raise errors.MissingRedirectURIError(request=oauth)
    else:
        oauth.using_default_redirect_uri = False
    # Exact match (raises invalid_grant; invalid_request when none was sent).
    validator.confirm_redirect_uri(client_id, code, oauth.redirect_uri, oauth.client, oauth)
    validator.validate_token_resource(oauth)  # RFC 8707
    validator.validate_token_dpop(oauth)  # RFC 9449
    nonce = validator.get_authorization_code_nonce(client_id, code, oauth.redirect_uri, oauth)
    token = _issue(validator, oauth, refresh_token=True, nonce=nonce)
    validator.invalidate_authorization_code(client_id, code, oauth)
    return token


def _refresh_token(validator: Validator, oauth: OAuthRequest, request: HttpRequest) -> dict[str, Any]:
    if oauth.refresh_token is None:
        raise errors.InvalidRequestError(description="Missing refresh token parameter.", request=oauth)
    _authenticate(validator, oauth, request, public_allowed=True)
    # Rotated or revoked: a replay, the whole family revoked (RFC 9700 §4.14.2).
    if not validator.validate_refresh_token(oauth.refresh_token, oauth.client, oauth):
        raise errors.InvalidGrantError(request=oauth)
    original = scope_to_list(validator.get_original_scopes(oauth.refresh_token, oauth))
    if oauth.scope:
        oauth.scopes = oauth.scope.strip().split(" ")  # oauthlib's scope_to_list of a string
        if not all(scope in original for scope in oauth.scopes) and not validator.is_within_original_scope(
            oauth.scopes, oauth.refresh_token, oauth
        ):
            raise errors.InvalidScopeError(request=oauth)
    else:
        oauth.scopes = original
    validator.validate_token_resource(oauth)  # RFC 8707: within the grant's resources
    validator.validate_token_dpop(oauth)  # RFC 9449
    return _issue(validator, oauth, refresh_token=True, nonce=None)


def client_credentials_outcome(request: HttpRequest) -> dict[str, Any] | HttpResponse:
    """The client-credentials grant's answer to this POST (grant_type=client_credentials,
    no query string, the DPoP proof if any already checked by the token view): the token
    response's fields (a 200, its body `token_body`) or the error response. token_response
    (the token view) and the bearer path before Django's request cycle
    (config/bearer_path.py) both call it."""
    try:
        return _client_credentials(request)
    except errors.OAuth2Error as exc:
        return _error_response(exc)


def _client_credentials(request: HttpRequest) -> dict[str, Any]:
    """RFC 6749 §4.4 on the form itself: the same checks, order and errors as the oauthlib
    request's path (authentication as registered, the grant registered, scopes within the
    client's, RFC 8707 targets, RFC 9449 binding), and nothing stored (save_bearer_token
    keeps nothing for this grant)."""
    form = request.POST
    try:
        client = authenticate_presented(request.META.get("HTTP_AUTHORIZATION"), form)
        if client is None:
            raise errors.InvalidClientError()
        if not client.allows_grant_type(*GRANT_TYPE_MAPPING["client_credentials"]):
            raise errors.UnauthorizedClientError()
        # Validator.get_default_scopes and validate_scopes, for this grant.
        scopes = scope_to_list(form.get("scope")) or [
            scope for scope in client.scope_list if scope != "openid"
        ]
        if not set(scopes).issubset(set(client.scope_list)):
            raise errors.InvalidScopeError()
        # Validator.validate_token_resource for this grant: any known target, each once.
        resources: list[Any] = []
        for value in form.getlist("resource"):
            if value not in resources:
                resources.append(value)
        Validator._check_targets(resources, cast(Any, None))  # no oauthlib request: none in the error
        # Validator.validate_token_dpop for this grant: the key of the proof the token view
        # verified, required when the client registered dpop_bound_access_tokens.
        jkt = request.META.get(JKT_META) or None
        if jkt is None and client.dpop_bound_access_tokens:
            raise errors.CustomOAuth2Error(
                error="invalid_dpop_proof",
                description="This client must send a DPoP proof (dpop_bound_access_tokens).",
                status_code=400,
            )
    except errors.OAuth2Error as exc:
        exc.state = exc.state or form.get("state")  # oauthlib echoes it from the request
        raise
    expires_in = oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS
    access_token = client_token(client, scopes=scopes, resources=resources, expires_in=expires_in, jkt=jkt)
    return {
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "DPoP" if jkt else "Bearer",
        "scope": " ".join(scopes),
    }


# --- issuing ----------------------------------------------------------------------------------


def _id_token_hash(value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode("ascii").rstrip("=")


def _issue(
    validator: Validator, oauth: OAuthRequest, *, refresh_token: bool, nonce: str | None
) -> dict[str, Any]:
    """The token response (RFC 6749 §5.1, OIDC Core §3.1.3.3), signed and stored."""
    expires_in = oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS
    if callable(expires_in):
        expires_in = expires_in(oauth)
    oauth.expires_in = expires_in
    token: dict[str, Any] = {
        "access_token": _generator(oauth2_settings.ACCESS_TOKEN_GENERATOR)(oauth),
        "expires_in": expires_in,
        "token_type": "DPoP" if getattr(oauth, "cum_dpop_jkt", None) else "Bearer",
    }
    if oauth.scopes is not None:
        token["scope"] = " ".join(oauth.scopes)
    if refresh_token:
        if oauth.refresh_token and not validator.rotate_refresh_token(oauth):
            token["refresh_token"] = oauth.refresh_token
        else:
            token["refresh_token"] = _generator(oauth2_settings.REFRESH_TOKEN_GENERATOR)(oauth)
    if oauth.grant_type != "client_credentials" and oauth.scopes and "openid" in oauth.scopes:
        id_token: dict[str, Any] = {"aud": oauth.client_id, "iat": int(time.time())}
        if nonce is not None:
            id_token["nonce"] = nonce
        id_token["at_hash"] = _id_token_hash(token["access_token"])
        token["id_token"] = validator.finalize_id_token(id_token, token, None, oauth)
    # One transaction: the access token, the rotated refresh token and the session record.
    validator.save_bearer_token(token, oauth)
    return token


def native_enabled() -> bool:
    return getattr(settings, "TOKEN_ENDPOINT", "native") != "oauthlib"
