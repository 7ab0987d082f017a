"""Building OAuth 2.0 / OIDC error responses (RFC 6749 §4.1.2.1, §5.2; RFC 9207)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase, ResponseHeaders
from django.shortcuts import render


class SeeOther(HttpResponseRedirect):
    """303: the browser must not re-send a POST body to the client (RFC 9700 §4.11)."""

    status_code = 303
    allowed_schemes = ["http", "https"]


class ClientRedirect(SeeOther):
    """A 303 to a client's redirect URI, already checked as registered: its own scheme is
    allowed too (a native app's private-use scheme, RFC 8252 §7.1, which client_uris only
    accepts in reverse-domain form)."""

    def __init__(self, redirect_to: str, *args: Any, **kwargs: Any) -> None:
        self.allowed_schemes = [*SeeOther.allowed_schemes, urlsplit(redirect_to).scheme]
        super().__init__(redirect_to, *args, **kwargs)


def add_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redirect_error(
    redirect_uri: str, error: str, description: str = "", state: str | None = None
) -> HttpResponse:
    """An authorization error sent back to a redirect URI already checked as registered."""
    params = {"error": error}
    if description:
        params["error_description"] = description
    if state:
        params["state"] = state
    params["iss"] = settings.ISSUER
    return ClientRedirect(add_query(redirect_uri, params))


def error_page(request: HttpRequest, error: str, description: str, status: int = 400) -> HttpResponse:
    """Shown to the person when we cannot safely redirect (unknown client, unregistered URI).

    `description` appears under "Détails techniques": a protocol error's description
    (oauthlib's, RequestUriError's) is developer-facing English, as in the redirects and JSON
    errors (RFC 6749 §4.1.2.1); a sentence meant for the resident goes through gettext.
    """
    return render(request, "oidc/error.html", {"error": error, "description": description}, status=status)


def json_error(
    error: str, description: str = "", status: int = 400, headers: dict[str, str] | None = None
) -> JsonResponse:
    body = {"error": error}
    if description:
        body["error_description"] = description
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def constant_headers(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Header (name, value) pairs checked once, as HttpResponse checks each header it is
    given (ASCII name, Latin-1 value, no newline), for json_answer to set as they are."""
    return tuple(ResponseHeaders(dict(pairs))._store.values())


# json.dumps(data, cls=DjangoJSONEncoder) builds an encoder per call with these very options.
_ENCODER = DjangoJSONEncoder()


def json_body(data: dict[str, Any]) -> bytes:
    """JsonResponse(data)'s body: json.dumps with DjangoJSONEncoder (its default separators),
    UTF-8 (ASCII in fact: ensure_ascii). One encoder for every call (it keeps no state)."""
    return _ENCODER.encode(data).encode()


def json_answer(
    data: dict[str, Any], headers: tuple[tuple[str, str], ...] = (), status: int = 200
) -> HttpResponse:
    """What JsonResponse(data, status=status) is, byte for byte (DjangoJSONEncoder, its
    separators), plus `headers`: pairs from constant_headers(), set without being checked
    again at every response (the protocol endpoints' hot path)."""
    response = HttpResponse(json_body(data), content_type="application/json", status=status)
    store = response.headers._store
    for name, value in headers:
        store[name.lower()] = (name, value)
    return response


def readable_form(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Endpoints that take a form body (RFC 6749 §3.2, RFC 7009, RFC 7662, RFC 9126): a body
    Django cannot parse (a multipart body with a broken boundary, say) is answered with the
    protocol's `invalid_request` in JSON, not Django's HTML 400 page. Outermost wrapper."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST":
            try:
                request.POST  # noqa: B018 - parsed here once; the view reads the parsed form
            except MultiPartParserError:
                return json_error("invalid_request", "The request body cannot be read as a form.")
        return view(request, *args, **kwargs)

    return wrapped
