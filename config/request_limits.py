"""Oversized and malformed requests, refused before anything reads them (issue 16, hostile input).

Three pieces, outermost first:

- `BodyWithoutLength` (WSGI, config/wsgi.py): a body sent without Content-Length (chunked)
  would be seen as empty by Django, which reads exactly Content-Length bytes. It is read here
  up to its limit into a spooled file (memory up to 64 KiB, then a temporary file) and given
  to Django with its length; beyond the limit it is not read further and the request is
  marked, so that the middleware answers 413.
- `RequestSizeMiddleware` (Django, right after the security headers): 413 for a body
  announced beyond its limit (never read), 400 for a Content-Length that is not a number.
  The limit is `DATA_UPLOAD_MAX_MEMORY_SIZE` for every body but multipart ones, whose files
  Django spools to disk: `REQUEST_MULTIPART_MAX_BYTES`.
- `bad_request` (the root URLconf's `handler400`): what Django raises while parsing a body or
  a query string it accepted (`RequestDataTooBig` → 413, `TooManyFieldsSent` and
  `TooManyFilesSent` → 400) and its other `SuspiciousOperation`s → 400.

Each answer speaks the language of the endpoint (`refusal`): an OAuth error object on the
protocol endpoints, an RFC 7807 problem on the JSON APIs, a readable page elsewhere.
Headers (size, count, cookies) are bounded by the HTTP server itself: granian answers 431
beyond its HTTP/1 buffer (docs/operators.md, "Request limits").
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from common.problems import problem
from config.errors import API_PREFIXES  # the same kinds as the 503 of a backing service down
from config.middleware import PROTOCOL_PATHS

# Set in the WSGI environ by BodyWithoutLength when a body without length is over its limit.
BODY_TOO_LARGE = "cum.body_too_large"
# A body without length is kept in memory up to this size, on disk beyond (bounded by its limit).
SPOOL_IN_MEMORY = 64 * 1024


def body_limit(content_type: str) -> int:
    """The most bytes a body of this content type may have."""
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        return int(settings.REQUEST_MULTIPART_MAX_BYTES)
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def endpoint_kind(path_info: str) -> str:
    """'protocol' (OAuth/OIDC JSON errors), 'api' (RFC 7807 problems) or 'page' (for people)."""
    if path_info in PROTOCOL_PATHS:
        return "protocol"
    if path_info.startswith(API_PREFIXES) and not path_info.startswith("/api/docs/"):
        return "api"
    return "page"


# code → (status, the OAuth error_description: developer-facing English, RFC 6749)
_REASONS: dict[str, tuple[int, str]] = {
    "body_too_large": (413, "request body too large"),
    "too_many_fields": (400, "too many parameters"),
    "invalid_content_length": (400, "invalid Content-Length"),
    "bad_request": (400, "malformed request"),
}


def _titles(code: str) -> tuple[str, str]:
    """(title, explanation) in the active language, for problems and pages."""
    if code == "body_too_large":
        return _("Requête trop volumineuse"), _("Les données envoyées dépassent la taille acceptée.")
    if code == "too_many_fields":
        return _("Trop de paramètres"), _("La requête contient trop de champs ou de paramètres.")
    return _("Requête invalide"), _("La requête n'a pas pu être comprise.")


def refusal(request: HttpRequest, code: str) -> HttpResponseBase:
    """The answer to a request refused for its shape (`code`: a key of _REASONS)."""
    status, description = _REASONS[code]
    kind = endpoint_kind(request.path_info)
    if kind == "protocol":
        response: HttpResponseBase = JsonResponse(
            {"error": "invalid_request", "error_description": description}, status=status
        )
        response["Cache-Control"] = "no-store"
        return response
    title, explanation = _titles(code)
    if kind == "api":
        return problem(status, title, explanation, type_=f"urn:cum:problem:{code}", code=code)
    page = TemplateResponse(
        request, "request_refused.html", {"title": title, "explanation": explanation}, status=status
    )
    page.render()
    return page


class RequestSizeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.META.get(BODY_TOO_LARGE):
            return refusal(request, "body_too_large")
        raw = request.META.get("CONTENT_LENGTH")
        if raw:
            try:
                length = int(raw)
            except ValueError:
                return refusal(request, "invalid_content_length")
            if length < 0:
                return refusal(request, "invalid_content_length")
            if length > body_limit(request.META.get("CONTENT_TYPE", "")):
                return refusal(request, "body_too_large")
        return self.get_response(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponseBase:
    """handler400: Django's SuspiciousOperation answers, in the endpoint's language."""
    if isinstance(exception, RequestDataTooBig):
        return refusal(request, "body_too_large")
    if isinstance(exception, (TooManyFieldsSent, TooManyFilesSent)):
        return refusal(request, "too_many_fields")
    return refusal(request, "bad_request")


class BodyWithoutLength:
    """WSGI wrapper: a chunked body (no Content-Length) read up to its limit, then handed to
    Django with a Content-Length; over the limit, marked for a 413 and not read further."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (
            not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            limit = body_limit(environ.get("CONTENT_TYPE", ""))
            spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
            stream = environ["wsgi.input"]
            size = 0
            while size <= limit:
                chunk = stream.read(min(64 * 1024, limit + 1 - size))
                if not chunk:
                    break
                spool.write(chunk)
                size += len(chunk)
            if size > limit:
                spool.close()
                spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
                size = 0
                environ[BODY_TOO_LARGE] = True
            spool.seek(0)
            environ["wsgi.input"] = spool
            environ["CONTENT_LENGTH"] = str(size)
        return self.app(environ, start_response)
