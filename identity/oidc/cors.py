"""CORS on the protocol endpoints a single-page app calls: token, userinfo, revocation.

The "OAuth 2.0 for Browser-Based Applications" BCP: a partner's page (a public client)
exchanges its code, calls userinfo, refreshes and revokes from the browser. Each client
registers the web origins of its pages (`allowed_origins`, `register_client
--allowed-origin`, the partner admin); no other origin is ever named in an answer.

The rules, one per question the browser asks:

- **Preflight** (`OPTIONS` with `Access-Control-Request-Method`): the browser sends no body
  and no credentials, so the client is not known yet. The preflight is answered for an
  origin registered by *any* client, with the endpoint's methods, the request headers a
  client sends (`Authorization`, `Content-Type`, and `DPoP` for sender-constrained tokens),
  and `Access-Control-Max-Age`. Answering it reveals nothing: it only lets the browser send
  the real request, which is judged on its own below. Another origin gets a bare 204
  without CORS headers, which the browser treats as a refusal.
- **The actual answer, successful (2xx)**: `Access-Control-Allow-Origin` only when the
  origin is registered for the client the answer concerns: on the token and revocation
  endpoints, the client named in the request (`client_id` in the body, or the user name of
  HTTP Basic); on userinfo, the client the access token was issued to (its `client_id`
  claim, signature checked). A page of partner A can thus never read tokens or claims
  issued to partner B, even with B's code or token in hand.
- **The actual answer, an error (4xx)**: allowed for an origin registered by any client, like
  the preflight: an OAuth error carries no token and no personal data, and an app must be
  able to read `invalid_grant` (sign in again) or `invalid_token`.
- **A request from a page of another origin** (token and revocation endpoints): a POST of a
  form is a "simple" request the browser sends without a preflight, hiding only the answer.
  So when the request carries an `Origin` (a browser sent it) that is not registered for
  the client it names, nothing is done: 400 `invalid_request`, the code not redeemed, no
  token issued or revoked. Back-ends send no `Origin` and are not concerned.
- Never `Access-Control-Allow-Credentials`: the browser sends no cookie to these endpoints
  (CORS requests without credentials, the library's default), so a page can only use the
  codes and tokens it holds. Never `*`: every answer names its origin, with `Vary: Origin`
  on every answer of these endpoints so that no cache mixes them up.
- `Access-Control-Expose-Headers`: `WWW-Authenticate` (userinfo's errors), `DPoP-Nonce`
  (RFC 9449 §8, once DPoP is enabled) and `Retry-After` (rate limits).

Introspection is not wrapped: it is for resource servers' back-ends (no page calls it).
Discovery and JWKS are public documents served with `*` (views/documents.py).

The origins come from consent.api.cors (the same normalisation and per-client check as the
cookie-consent and page-view APIs).
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, RawPostDataException, UnreadablePostError
from django.http.response import HttpResponseBase
from oauth2_provider.models import get_application_model

from consent.api.cors import client_origins, origin_allowed, request_origin
from identity.client_cache import client_by_client_id
from identity.oidc.access_tokens import decode
from identity.oidc.errors import json_error

ALLOWED_HEADERS = "Authorization, Content-Type, DPoP"
EXPOSED_HEADERS = "WWW-Authenticate, DPoP-Nonce, Retry-After"
MAX_AGE_SECONDS = 600
# The bodies the token and revocation endpoints read their parameters from (request.POST).
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

View = Callable[..., HttpResponseBase]
ClientOf = Callable[[HttpRequest], Any | None]


def origin_registered(origin: str) -> bool:
    """Whether any partner client registered this (normalised) web origin."""
    if not origin:
        return False
    candidates = (
        get_application_model().objects.filter(allowed_origins__icontains=origin).only("allowed_origins")
    )
    return any(origin in client_origins(client) for client in candidates)


def _form_value(request: HttpRequest, name: str) -> str:
    if request.method != "POST" or request.content_type not in FORM_TYPES:
        return ""
    try:
        return str(request.POST.get(name, ""))
    except (RawPostDataException, UnreadablePostError, SuspiciousOperation, ValueError):
        return ""  # an unreadable body is the view's error to report, not ours


def client_named_in_body(request: HttpRequest) -> Any | None:
    """The client a token or revocation request names: HTTP Basic's user name, else the
    `client_id` form parameter (request.POST, where django-oauth-toolkit reads the body too)."""
    client_id = ""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        client_id = unquote_plus(decoded.partition(":")[0])  # RFC 6749 §2.3.1: form-encoded
    if not client_id:
        client_id = _form_value(request, "client_id")
    return client_by_client_id(client_id) if client_id else None


def client_of_access_token(request: HttpRequest) -> Any | None:
    """The client the Bearer access token of a userinfo request was issued to."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = value.strip() if scheme.lower() in {"bearer", "dpop"} else ""
    if not token:
        token = _form_value(request, "access_token")
    claims = decode(token) if token else None
    client_id = claims.get("client_id") if claims else None
    return client_by_client_id(client_id) if isinstance(client_id, str) and client_id else None


def _add_vary(response: HttpResponseBase) -> None:
    vary = [part.strip() for part in response.headers.get("Vary", "").split(",") if part.strip()]
    if "Origin" not in vary:
        vary.append("Origin")
    response.headers["Vary"] = ", ".join(vary)


def _preflight(origin: str, methods: str) -> HttpResponse:
    response = HttpResponse(status=204)
    _add_vary(response)
    if origin_registered(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = methods
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
    return response


def _foreign_origin(request: HttpRequest, origin: str, client_of: ClientOf) -> bool:
    """A POST from a browser page whose origin the client it names has not registered."""
    if request.method != "POST" or "HTTP_ORIGIN" not in request.META:  # the Origin header
        return False
    client = client_of(request)
    return client is not None and not origin_allowed(client, origin)


def _origin_refused() -> HttpResponse:
    return json_error(
        "invalid_request",
        "The Origin of this request is not registered for this client (allowed_origins).",
        400,
    )


def with_cors(
    view: View,
    *,
    methods: str,
    client_of: Callable[[HttpRequest], Any | None],
    refuse_foreign_origin: bool = False,
) -> View:
    """`view` with the CORS rules above; `client_of` finds the client a successful answer
    concerns, `methods` are those a page may use (`OPTIONS` is added);
    `refuse_foreign_origin`: a POST naming a client from an origin it did not register is
    refused before the view runs (the token and revocation endpoints)."""

    allowed_methods = f"{methods}, OPTIONS"

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        origin = request_origin(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return _preflight(origin, allowed_methods)
        response: HttpResponseBase
        if refuse_foreign_origin and _foreign_origin(request, origin, client_of):
            response = _origin_refused()
        else:
            response = view(request, *args, **kwargs)
        _add_vary(response)
        # oauthlib adds its own Access-Control-Allow-Origin to code redemptions (https
        # origins only): these rules replace it, so that every answer follows them.
        response.headers.pop("Access-Control-Allow-Origin", None)
        if not origin:
            return response
        if 200 <= response.status_code < 300:
            allowed = origin_allowed(client_of(request), origin)
        else:
            allowed = origin_registered(origin)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response

    return wrapped
