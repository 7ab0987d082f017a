from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse
from django.http.response import ResponseHeaders

from identity.sessions import SESSION_SID, browser_session_for_request

# Pages are server-rendered with no inline script or style: a strict policy costs nothing.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "font-src 'self'; connect-src 'self'; form-action 'self' https: http://127.0.0.1:* http://localhost:*; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=()"

# (lower-case name, (name, value)) as Django's ResponseHeaders stores them: checked and
# encoded once by Django itself here, instead of at every response.
_SECURITY_HEADERS = tuple(
    ResponseHeaders(
        {"Content-Security-Policy": DEFAULT_CSP, "Permissions-Policy": PERMISSIONS_POLICY}
    )._store.items()
)


class SecurityHeadersMiddleware:
    """Content-Security-Policy and related headers on every response that lacks them
    (`response.headers.setdefault(name, value)` for each, with the stored pair precomputed)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        stored = response.headers._store
        for lowered, pair in _SECURITY_HEADERS:
            if lowered not in stored:
                stored[lowered] = pair
        return response


# Protocol endpoints are called by partner back-ends with tokens, not by a signed-in
# browser; static files and probes need no session either.
SESSION_CHECK_SKIPPED_PREFIXES = (
    "/token",
    "/userinfo",
    "/introspect",
    "/revoke",
    "/jwks.json",
    "/.well-known/",
    "/static/",
    "/healthz",
    "/readyz",
    "/metrics",
)


class BrowserSessionMiddleware:
    """Signs a browser out as soon as its session record was ended elsewhere.

    Ending a session (sign-out everywhere, revocation from the account pages, password
    reset, "this wasn't me", operator reset) deletes the Django session it is bound to;
    this is the second lock, for when that binding was stale (the session key cycled
    since the record last saw it) or the session store kept a copy. One indexed query
    (BrowserSession.sid) per signed-in request, cached on the request
    (identity.sessions.browser_session_for_request); anonymous requests cost nothing more
    than the session lookup Django already does. Sits right after AuthenticationMiddleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(SESSION_CHECK_SKIPPED_PREFIXES):
            self._check(request)
        return self.get_response(request)

    @staticmethod
    def _check(request: HttpRequest) -> None:
        session = getattr(request, "session", None)
        if session is None or SESSION_KEY not in session:
            return  # anonymous: no user to load, nothing to check
        if SESSION_SID not in session:
            return  # signed in before session records, or by a test/admin login: adopted on use
        # Signs the browser out (django.contrib.auth.logout) when the record has ended.
        browser_session_for_request(request, adopt=False)
