"""The server-error handler (`handler500` in config/urls.py): a backing service that is down
is a 503 the reader understands, never a 500 page.

Sessions, rate-limit counters and one-time tickets live in Redis when `REDIS_URL` is set,
and everything lives in PostgreSQL. When either cannot be reached the request fails
*closed*: nothing is decided without the counters that protect sign-in from password
guessing, and no page pretends to work. The answer depends on who asked
(docs/operators.md, "When Redis or PostgreSQL is down"):

- the protocol endpoints (config.middleware.PROTOCOL_PATHS): the OAuth error JSON
  `temporarily_unavailable` (RFC 6749 §4.1.2.1), 503;
- the JSON APIs (`/api/`, `/consent/api/`, `/profiles/api/`, `/dpo/api/`): an RFC 7807
  problem, 503;
- pages: a readable page in the resident's language, 503, `Retry-After`.

Any other uncaught exception keeps Django's plain 500 answer (and its logged traceback).
Django calls this view inside its `except` block, so the exception is `sys.exc_info()`;
the page is rendered without the request (no session, no user: the failing parts).
"""

from __future__ import annotations

import sys

import redis
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.defaults import server_error

from common.problems import problem
from config.middleware import is_protocol_path

RETRY_AFTER_SECONDS = 30
API_PREFIXES = ("/api/", "/consent/api/", "/profiles/api/", "/dpo/api/")


def backing_service_down(exc: BaseException | None) -> bool:
    """The exception (or one it was raised from) says Redis or the database is unreachable."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, redis.RedisError | OperationalError | InterfaceError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def server_error_view(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    if not backing_service_down(sys.exc_info()[1]):
        return server_error(request, template_name)
    path = request.path_info
    response: HttpResponse
    if is_protocol_path(path):
        response = JsonResponse(
            {
                "error": "temporarily_unavailable",
                "error_description": "The service is temporarily unavailable; retry later.",
            },
            status=503,
        )
    elif path.startswith(API_PREFIXES):
        response = problem(
            503,
            _("Service momentanément indisponible"),
            _("Réessayez dans quelques minutes."),
        )
    else:
        response = HttpResponse(render_to_string("errors/unavailable.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response
