"""The lean protocol path: discovery and JWKS answered before Django's request cycle.

Anyone may fetch the discovery documents and the JWKS, many times a second; their bytes
change only with a deployment or a signing key change. `LeanProtocolPath` wraps the WSGI
application (config/wsgi.py) and answers GET and HEAD on those exact paths from a stored
copy of the response Django itself last built there: same status, same headers (security
headers, CORS, Cache-Control, ETag…), same bytes. So every behaviour of the full stack is
kept by construction, and the request skips the middleware chain, URL resolution and the
request signals.

A stored copy is used only while its ETag is the current one:
- discovery: the document of this process (identity.oidc.views.discovery.metadata_bytes,
  per issuer and claims-registry generation);
- JWKS: identity.keys.published_jwks_if_current(), which never queries the database and
  says "unknown" once its cache time runs out (≤ 30 s, never past a key's expires_at) or
  the shared key-set version changed (read at most every second). Then the request goes
  through Django, which rebuilds the document, and its response becomes the new copy.

A copy is taken only from a 200 answer to a plain GET (no If-None-Match) that sets no
cookie and varies on no request header, per path and per "is the request secure" (HSTS
depends on it). The Host header is still validated against ALLOWED_HOSTS exactly as Django
does (an invalid one goes through Django, which answers 400), and anything unexpected —
another method, an error while checking — also goes through Django.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest

from common import request_log
from identity.keys import published_jwks_if_current
from identity.oidc.views.discovery import metadata_bytes
from identity.oidc.views.documents import etag_matches

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Headers = list[tuple[str, str]]


def _discovery_etag() -> str | None:
    return metadata_bytes()[1]


def _jwks_etag() -> str | None:
    published = published_jwks_if_current()
    return published.etag if published is not None else None


# Path → the ETag of the bytes Django would serve there now (None: unknown without Django).
CURRENT_ETAG: dict[str, Callable[[], str | None]] = {
    "/.well-known/openid-configuration": _discovery_etag,
    "/.well-known/oauth-authorization-server": _discovery_etag,
    "/jwks.json": _jwks_etag,
}
_NOT_IN_304 = frozenset({"content-type", "content-length"})
# Per request, never replayed: each answer gets its own (see _logged_answer).
_PER_REQUEST = frozenset({"x-request-id"})


@dataclass(frozen=True)
class StoredResponse:
    etag: str
    status: str
    headers: Headers
    not_modified_headers: Headers
    body: bytes


def _stored_from(status: str, headers: Headers, body: bytes) -> StoredResponse | None:
    names = {name.lower(): value for name, value in headers}
    if not status.startswith("200 ") or "etag" not in names or "set-cookie" in names or "vary" in names:
        return None
    kept = [(name, value) for name, value in headers if name.lower() not in _PER_REQUEST]
    return StoredResponse(
        etag=names["etag"],
        status=status,
        headers=kept,
        not_modified_headers=[(name, value) for name, value in kept if name.lower() not in _NOT_IN_304],
        body=body,
    )


class LeanProtocolPath:
    def __init__(self, application: WSGIApp) -> None:
        self.application = application
        self._stored: dict[tuple[str, bool], StoredResponse] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        if path not in CURRENT_ETAG or method not in {"GET", "HEAD"}:
            return self.application(environ, start_response)
        try:
            key = self._key(environ, path)
            stored = self._stored.get(key) if key is not None else None
            if stored is not None and stored.etag == CURRENT_ETAG[path]():
                return self._logged_answer(stored, environ, start_response, path)
        except Exception:  # never worse than the full stack: let Django answer
            logger.warning("lean path: falling back to the full request cycle", exc_info=True)
            key = None
        return self._through_django(environ, start_response, key)

    @staticmethod
    def _key(environ: dict[str, Any], path: str) -> tuple[str, bool] | None:
        request = WSGIRequest(environ)
        try:
            request.get_host()  # ALLOWED_HOSTS, as Django checks it
        except DisallowedHost:
            return None
        return (path, request.is_secure())

    def _logged_answer(
        self, stored: StoredResponse, environ: dict[str, Any], start_response: StartResponse, path: str
    ) -> list[bytes]:
        # The same request id and access line as Django's RequestLogMiddleware gives.
        context, token = request_log.begin(environ)
        context.route = path
        status = 500
        try:

            def with_request_id(status_line: str, headers: Headers, *exc_info: Any) -> Any:
                nonlocal status
                status = int(status_line.split(" ", 1)[0])
                return start_response(
                    status_line, [*headers, ("X-Request-ID", context.request_id)], *exc_info
                )

            return self._answer(stored, environ, with_request_id)
        finally:
            request_log.end(context, token, status)

    @staticmethod
    def _answer(
        stored: StoredResponse, environ: dict[str, Any], start_response: StartResponse
    ) -> list[bytes]:
        if etag_matches(environ.get("HTTP_IF_NONE_MATCH"), stored.etag):
            start_response("304 Not Modified", list(stored.not_modified_headers))
            return []
        start_response(stored.status, list(stored.headers))
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [stored.body]

    def _through_django(
        self, environ: dict[str, Any], start_response: StartResponse, key: tuple[str, bool] | None
    ) -> Iterable[bytes]:
        storable = (
            key is not None and environ["REQUEST_METHOD"] == "GET" and "HTTP_IF_NONE_MATCH" not in environ
        )
        if not storable:
            return self.application(environ, start_response)
        seen: dict[str, Any] = {}

        def recording_start_response(status: str, headers: Headers, *exc_info: Any) -> Any:
            seen["status"], seen["headers"] = status, list(headers)
            return start_response(status, headers, *exc_info)

        result = self.application(environ, recording_start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # request_finished, as the server would have sent it
        if "status" in seen:
            stored = _stored_from(seen["status"], seen["headers"], body)
            if stored is not None and key is not None:
                with self._lock:
                    self._stored[key] = stored
        return [body]
