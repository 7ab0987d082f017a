"""CORS for the cookie-consent API: only the origins registered on the partner's client.

A partner client lists its web origins in `allowed_origins` (space-separated, e.g.
``https://billetterie.example.org https://www.billetterie.example.org``). A request whose
`Origin` is one of them gets ``Access-Control-Allow-Origin: <that origin>``; any other
origin gets no CORS header at all, so the browser withholds the answer from the page.
Credentials are never allowed cross-origin: the widget sends no cookie to us.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Content-Type"
MAX_AGE_SECONDS = 600


def normalise_origin(value: str) -> str:
    """`scheme://host[:port]` in lower case, or "" if `value` is not an http(s) origin."""
    value = (value or "").strip()
    if not value or value == "null":
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def client_origins(client: Any) -> set[str]:
    raw = getattr(client, "allowed_origins", "") or ""
    return {origin for origin in (normalise_origin(item) for item in raw.split()) if origin}


def request_origin(request: HttpRequest) -> str:
    # The Origin header, read from META: request.headers builds a dict of every header.
    return normalise_origin(request.META.get("HTTP_ORIGIN", ""))


def origin_allowed(client: Any, origin: str) -> bool:
    return bool(client is not None and origin and origin in client_origins(client))


def apply_cors(response: HttpResponse, *, client: Any, origin: str, preflight: bool = False) -> HttpResponse:
    """Add the CORS headers when `origin` is registered on `client`; always `Vary: Origin`."""
    vary = [part.strip() for part in response.headers.get("Vary", "").split(",") if part.strip()]
    if "Origin" not in vary:
        vary.append("Origin")
    response.headers["Vary"] = ", ".join(vary)
    if not origin_allowed(client, origin):
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    if preflight:
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
    return response
