"""A lighter middleware path for the protocol endpoints.

Partner back-ends call the token, userinfo, introspection, revocation and PAR endpoints,
and anyone may fetch the discovery document and the JWKS, many times per second. None of
them uses a cookie: no session, no sign-in state, no language choice, no CSRF token (they
are CSRF-exempt: they authenticate the client or the bearer token on every call), no
flash messages, no second factor. The middleware that only serves browser pages is therefore skipped on
these exact paths; everything else still runs on them (SecurityMiddleware's HTTPS and
header rules, our Content-Security-Policy headers, CommonMiddleware's Host validation
against ALLOWED_HOSTS, CSRF's view check, X-Frame-Options).

Each browser-only middleware is a subclass of Django's own with one change: on a
protocol path it passes the request straight on. Subclasses (rather than one wrapper
around them all) keep Django's system checks and ordering rules working unchanged.
In production (config/wsgi.py) these paths go through a second Django handler whose chain
leaves them out altogether (config/protocol_handler.py); the skip here keeps every other
way in (the test client, ASGI) answering the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponseBase
from django.middleware.locale import LocaleMiddleware as DjangoLocaleMiddleware
from django.utils.log import log_response
from django_otp.middleware import OTPMiddleware as DjangoOTPMiddleware

from common import request_log

# Exact paths (no prefix matching: "/token/x" or "/tokens" get the full stack).
PROTOCOL_PATHS = frozenset(
    {
        "/token",
        "/userinfo",
        "/introspect",
        "/revoke",
        "/par",
        "/jwks.json",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/metrics",
    }
)


def is_protocol_path(path_info: str) -> bool:
    return path_info in PROTOCOL_PATHS


class _SkippedOnProtocolPaths:
    get_response: Any

    def __call__(self, request: Any) -> Any:
        if request.path_info in PROTOCOL_PATHS:
            return self.get_response(request)
        # A mixin: the middleware class it is combined with provides __call__.
        return super().__call__(request)  # type: ignore[misc]


class SessionMiddleware(_SkippedOnProtocolPaths, DjangoSessionMiddleware):
    pass


class LocaleMiddleware(_SkippedOnProtocolPaths, DjangoLocaleMiddleware):
    pass


class AuthenticationMiddleware(_SkippedOnProtocolPaths, DjangoAuthenticationMiddleware):
    pass


class MessageMiddleware(_SkippedOnProtocolPaths, DjangoMessageMiddleware):
    pass


class OTPMiddleware(_SkippedOnProtocolPaths, DjangoOTPMiddleware):
    # Wraps request.user, which AuthenticationMiddleware does not set on these paths.
    pass


class RequestLogMiddleware:
    """First of all middleware: the request id, and one access line per request
    (common/request_log.py). Exceptions in the views below have already been turned into
    responses by Django when they reach this point."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        context, token = request_log.begin(request.META)
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            match = request.resolver_match
            if match is not None:
                context.route = "/" + match.route if match.route else match.view_name or "-"
            response["X-Request-ID"] = context.request_id
            if status >= 400 and not getattr(response, "_has_been_logged", False):
                # Django logs 4xx/5xx answers after the middleware chain, outside the request's
                # context: logged here instead, with its request id (Django then skips it).
                reason = response.reason_phrase
                log_response("%s: %s", reason, request.path, response=response, request=request)  # type: ignore[arg-type]
            return response
        finally:
            request_log.end(context, token, status)
