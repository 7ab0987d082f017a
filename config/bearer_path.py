"""The bearer path: userinfo, introspection and the token grants answered before Django, when they succeed.

Partner back-ends call /userinfo with a Bearer token, resource servers call /introspect
with their Basic credentials and machine clients get tokens by the client-credentials grant
at /token, many times a second. Django's request cycle around these views
(the middleware chain, even shortened by config/protocol_handler.py) costs about as much as
the views themselves. `BearerPath` (WSGI, config/wsgi.py) answers a request of one plain
shape itself, by calling the very function the view calls (`userinfo_outcome`,
`introspection_outcome`, `client_credentials_outcome`, `token_outcome`: the same token
validation, client authentication, database reads, claims, scope/resource/DPoP rules and
signing), and only when that function gives a successful answer. Anything else — another
shape, any refusal or error the function returns, an exception, any doubt — goes through
Django, which answers as it always did: it computes everything again for userinfo,
introspection and client credentials (a refused request costs its checks twice), and is
handed the outcome already computed for the code and refresh grants (below).

The shapes answered here (every other request goes through Django):
- GET or POST /userinfo with an `Authorization: Bearer` header, no body, no query string, no
  DPoP header, no Origin (CORS), no cookie;
- POST /introspect with `Authorization: Basic` (client_secret_basic), a form body
  (application/x-www-form-urlencoded) with a Content-Length within the body limit, no
  query string, no Origin, no cookie;
- POST /token with grant_type=client_credentials (the form's last value, as the view reads
  it), the client authenticated by `Authorization: Basic` (client_secret_basic) or by
  client_id and client_secret in the form (client_secret_post) — never a client assertion
  (private_key_jwt: its jti is spent by the first computation) —, the same form body rules
  as /introspect, no DPoP header (so no proof to check and no nonce to add), and the
  native token endpoint (settings.TOKEN_ENDPOINT not "oauthlib"). The token view's own
  work around the function is done here too: its DPoP key META entry cleared, the
  TOKENS_ISSUED metric counted (the headers are Django's, learned as below).
- POST /token with grant_type=authorization_code or refresh_token (the form's last value),
  the same rules otherwise (Basic, client_secret_post or a public client's client_id in the
  form; never a client assertion; no DPoP header; the native endpoint). These grants have
  side effects even when refused (a code is claimed, a replayed code or a reused refresh
  token revokes its family), so they are computed ONCE, here, by the view's own function
  (identity.oidc.views.token.token_outcome: the grant, the metric, the view's headers). A 200
  is answered here when Django's headers for it are known (learned from a 200 of these grants
  whose view headers were the same). Anything else — a refusal, an exception, a first 200 —
  goes to Django WITH the outcome: a `Precomputed` for this very environ under
  PRECOMPUTED_KEY (not an HTTP_* key: no client sets it; the view takes only a `Precomputed`
  made for its own environ), which the token view returns (or whose exception it raises)
  instead of computing again; the middleware chain dresses it as before, the access line
  keeps the request id the computation logged under. Learning needs Django's body to be the
  very bytes computed here.

What the kept middleware give on these paths is kept:
- the request id, one access line and the request metrics (common.request_log, as
  RequestLogMiddleware: the route is the path, the client id set by the shared function);
- the request-side checks, by calling the middleware's own methods on the same
  `WSGIRequest`: SecurityMiddleware's HTTPS redirect, RequestSizeMiddleware's 413/400,
  CommonMiddleware's Host validation (ALLOWED_HOSTS), disallowed user agents and
  PREPEND_WWW. If any of them would answer or raise, the request goes through Django;
- the response headers (Content-Type, Cache-Control, Pragma, Vary, the security headers,
  HSTS, X-Frame-Options…) are those of Django's own 200 answer at that path, for that method
  and "is the request secure": taken from the first successful request of each kind, which
  is sent through Django for it. A copy is kept only when Django's status is 200, its
  headers set no cookie, and its body is byte for byte the one computed here for the same
  request (for /token: the same fields and the same access-token header and claims, its
  jti, iat, exp and signature aside, since Django signs a token of its own); Content-Length
  and X-Request-ID are filled in per answer. After LEARNING_ATTEMPTS answers that do not
  match, that kind of request always goes through Django (a warning says so);
- `request_started` before the view's work and `request_finished` once the answer's body is
  whole, before it is returned (granian never calls a list's `close()`), sent by Django's
  handler class: the database connection's
  health check, its age limit and a broken connection's close (close_old_connections), the
  caches' close. A request handed to Django after the work began gets `request_finished`
  first, then Django's own pair: no connection left in an unknown state. Nothing here opens
  a transaction.

None of these views writes audit rows or has a rate limit (the client-credentials grant
stores nothing: its JWT is not kept; one computed here and then handed to Django is
simply never sent). The bearer path is off (every request
through Django) when the protocol paths' middleware chain holds a middleware it does not
know (`_REPRODUCED`), or WhiteNoise serves files from the site root (WHITENOISE_ROOT).
tests/oidc/test_bearer_path.py sends the same requests through this path and through
Django and compares status, headers and body.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost, PermissionDenied
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name
from django.core.signals import request_finished, request_started
from django.http import HttpResponse
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

from common import metrics, request_log
from config.protocol_handler import protocol_middleware_paths
from config.request_limits import RequestSizeMiddleware, body_limit
from identity.oidc.dpop import JKT_META
from identity.oidc.errors import json_body
from identity.oidc.token_endpoint import client_credentials_outcome, native_enabled, token_body
from identity.oidc.views.introspect import introspection_outcome
from identity.oidc.views.token import PRECOMPUTED_KEY, Precomputed, token_outcome
from identity.oidc.views.userinfo import userinfo_outcome

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Headers = list[tuple[str, str]]

USERINFO = "/userinfo"
INTROSPECT = "/introspect"
TOKEN = "/token"
_FORM_PATHS = frozenset({INTROSPECT, TOKEN})
# Client authentication by assertion (private_key_jwt): its jti is spent on first use, so
# such a request could not be handed on to Django afterwards.
_ASSERTION = ("client_assertion", "client_assertion_type")
# The access token's claims that differ between two tokens issued for the same request.
_PER_TOKEN_CLAIMS = ("jti", "iat", "exp")
# The grants with side effects even when refused (a code is claimed, a replayed code or a
# reused refresh token revokes a family): computed once here, never again by Django.
_ONCE_GRANTS = frozenset({"authorization_code", "refresh_token"})
FORM = "application/x-www-form-urlencoded"

# The middleware of the protocol paths' chain (config/protocol_handler.py) whose work on these
# two paths is done here, and how. Any other in the chain turns the bearer path off.
_REPRODUCED = {
    "config.middleware.RequestLogMiddleware": "request_log.begin/end, route = path",
    "whitenoise.middleware.WhiteNoiseMiddleware": "serves nothing at these paths (no WHITENOISE_ROOT)",
    "django.middleware.security.SecurityMiddleware": "process_request called; its headers copied",
    "identity.middleware.SecurityHeadersMiddleware": "its headers copied",
    "config.request_limits.RequestSizeMiddleware": "called",
    "django.middleware.common.CommonMiddleware": "process_request called; Content-Length",
    "django.middleware.csrf.CsrfViewMiddleware": "views exempt; no cookie accepted here",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "its header copied",
}
# Django's answers to this many requests of one kind not matching ours: that kind always goes
# through Django from then on (never two computations per request for nothing).
LEARNING_ATTEMPTS = 3
# Filled in per answer (_filled).
_PER_ANSWER = frozenset({"content-length", "x-request-id"})
_PASSED = HttpResponse()  # what RequestSizeMiddleware's next step "answers" when it lets a request on


def _next_step(request: Any) -> HttpResponse:
    return _PASSED


def _plain_shape(environ: dict[str, Any], path: str) -> bool:
    """The request shapes answered here (module docstring); False: through Django."""
    if environ.get("QUERY_STRING") or "HTTP_ORIGIN" in environ or "HTTP_COOKIE" in environ:
        return False
    if "HTTP_TRANSFER_ENCODING" in environ:
        return False
    method = environ.get("REQUEST_METHOD")
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if path == USERINFO:
        return (
            method in ("GET", "POST")
            and authorization[:7].lower() == "bearer "
            and "HTTP_DPOP" not in environ
            and environ.get("CONTENT_LENGTH", "") in ("", "0")
        )
    if path == TOKEN:
        # client_secret_basic, or client_secret_post (no Authorization header); no DPoP proof.
        if "HTTP_DPOP" in environ or (authorization and not authorization.startswith("Basic ")):
            return False
    elif not authorization.startswith("Basic "):
        return False
    # A form body only (read into memory, as Django reads one), never beyond its limit: a
    # multipart body, which Django spools to disk, is not read here.
    content_type = environ.get("CONTENT_TYPE", "")
    length = environ.get("CONTENT_LENGTH", "")
    return (
        method == "POST"
        and content_type.split(";")[0].strip().lower() == FORM
        and length.isascii()
        and length.isdigit()
        and 0 < int(length) <= body_limit(content_type)
    )


def _token_fields(body: bytes) -> tuple[Any, ...]:
    """A token answer's fields, its access token as its header and claims without the ones
    proper to each token (`_PER_TOKEN_CLAIMS`) but with its lifetime."""
    fields = json.loads(body)
    header, payload, _signature = fields.pop("access_token").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    lifetime = claims["exp"] - claims["iat"]
    for name in _PER_TOKEN_CLAIMS:
        claims.pop(name)
    return list(fields.items()), header, claims, lifetime


def _same_body(path: str, django: bytes, ours: bytes) -> bool:
    """Django's body is the one computed here (for /token: as `_token_fields` sees them, and
    the same bytes once our access token is put in Django's answer)."""
    if path != TOKEN:
        return django == ours
    try:
        theirs = json.loads(django)
        theirs["access_token"] = json.loads(ours)["access_token"]
        return token_body(theirs) == ours and _token_fields(django) == _token_fields(ours)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


class _Template:
    """Django's header list for one kind of answer, kept with the places of the headers filled
    in per answer (`_PER_ANSWER`), worked out once: (position, name, is it Content-Length)."""

    __slots__ = ("headers", "per_answer")

    def __init__(self, headers: Headers) -> None:
        self.headers = list(headers)
        self.per_answer = tuple(
            (position, name, name.lower() == "content-length")
            for position, (name, _value) in enumerate(headers)
            if name.lower() in _PER_ANSWER
        )


def _filled(template: _Template, body: bytes, request_id: str) -> Headers:
    """A stored header list with this answer's Content-Length and X-Request-ID."""
    headers = template.headers.copy()
    for position, name, is_length in template.per_answer:
        headers[position] = (name, str(len(body)) if is_length else request_id)
    return headers


class _Buffered(io.BytesIO):
    """A body read here, given back to Django from its start if the request goes there."""


def _rewound(environ: dict[str, Any]) -> dict[str, Any]:
    stream = environ.get("wsgi.input")
    if isinstance(stream, _Buffered):
        stream.seek(0)
    return environ


def _answer(body: bytes, sender: type) -> list[bytes]:
    """The body, once `request_finished` is sent.

    Django sends it when the server closes the response; here the body is already whole, so
    it is sent before returning it: a server that answers a list without calling its
    `close()` (granian does, PEP 3333 notwithstanding) would otherwise skip the end of the
    request (close_old_connections, the caches' close)."""
    request_finished.send(sender=sender)
    return [body]


class BearerPath:
    def __init__(self, application: WSGIApp, handler_class: type = WSGIHandler) -> None:
        self.application = application
        self.handler_class = handler_class  # the sender of request_started / request_finished
        self._stored: dict[tuple[str, str, bool], tuple[str, _Template]] = {}
        # For the code and refresh grants: Django's 200 headers, and the view's own headers
        # (token_outcome's response) they were learned with.
        self._once_stored: dict[tuple[str, str, bool], tuple[str, _Template, Headers]] = {}
        self._mismatches: dict[tuple[str, str, bool], int] = {}
        self._lock = threading.Lock()
        self._security = SecurityMiddleware(_next_step)
        self._common = CommonMiddleware(_next_step)
        self._size = RequestSizeMiddleware(_next_step)
        unknown = [
            path for path in protocol_middleware_paths(list(settings.MIDDLEWARE)) if path not in _REPRODUCED
        ]
        self.enabled = not unknown and not getattr(settings, "WHITENOISE_ROOT", None)
        if not self.enabled:
            logger.warning("bearer path off: middleware %s, or WHITENOISE_ROOT set", unknown)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if (path != USERINFO and path != INTROSPECT and path != TOKEN) or not self.enabled:
            return self.application(environ, start_response)
        try:
            request = self._request(environ, path)
            key = self._key(request, path) if request is not None else None
        except Exception:  # never worse than the full stack: let Django answer
            logger.warning("bearer path: falling back to Django", exc_info=True)
            request = key = None
        if request is None or key is None or self._mismatches.get(key, 0) >= LEARNING_ATTEMPTS:
            return self.application(_rewound(environ), start_response)
        return self._attempt(request, key, environ, start_response, path)

    @staticmethod
    def _key(request: WSGIRequest, path: str) -> tuple[str, str, bool]:
        """The kind of request Django's headers are kept for (HSTS depends on HTTPS)."""
        return (path, request.method or "", request.is_secure())

    def _request(self, environ: dict[str, Any], path: str) -> WSGIRequest | None:
        """The request, if it has a shape answered here and every kept middleware lets it on."""
        if not _plain_shape(environ, path):
            return None
        if path in _FORM_PATHS:
            # Read once here; Django reads the same bytes again if the request goes to it.
            body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
            environ["wsgi.input"] = _Buffered(body)
        request = WSGIRequest(environ)
        if path in _FORM_PATHS and request.content_type != FORM:
            return None
        try:
            if self._security.process_request(request) is not None:  # HTTPS redirect
                return None
            if self._size(request) is not _PASSED:  # 413 / 400
                return None
            if self._common.process_request(request) is not None:  # PREPEND_WWW
                return None
        except (DisallowedHost, PermissionDenied):  # Host not allowed, user agent refused
            return None
        return request

    def _attempt(
        self,
        request: WSGIRequest,
        key: tuple[str, str, bool],
        environ: dict[str, Any],
        start_response: StartResponse,
        path: str,
    ) -> Iterable[bytes]:
        set_script_prefix(get_script_name(environ))
        request_started.send(sender=self.handler_class, environ=environ)
        context, token = request_log.begin(environ)
        context.route = path
        try:
            once = path == TOKEN and self._once(request)
        except Exception:
            logger.warning("bearer path: falling back to Django", exc_info=True)
            once = False
        if once:
            return self._computed_once(request, key, environ, start_response, context, token)
        try:
            body = self._body(request, path)
        except Exception:
            logger.warning("bearer path: falling back to Django", exc_info=True)
            body = None
        stored = self._stored.get(key) if body is not None else None
        if body is None or stored is None:
            request_log.abandon(token)  # Django writes this request's access line
            request_finished.send(sender=self.handler_class)
            if body is None:
                return self.application(_rewound(environ), start_response)
            return self._learn(_rewound(environ), start_response, key, body)
        status, template = stored
        headers = _filled(template, body, context.request_id)
        if path == TOKEN:
            metrics.TOKENS_ISSUED.labels("client_credentials").inc()  # as the token view
        request_log.end(context, token, 200)
        start_response(status, headers)
        return _answer(body, self.handler_class)

    @staticmethod
    def _once(request: WSGIRequest) -> bool:
        """A code or refresh grant of the plain shape (no client assertion), native endpoint."""
        form = request.POST
        return (
            native_enabled()
            and form.get("grant_type") in _ONCE_GRANTS
            and not any(name in form for name in _ASSERTION)
        )

    def _computed_once(
        self,
        request: WSGIRequest,
        key: tuple[str, str, bool],
        environ: dict[str, Any],
        start_response: StartResponse,
        context: request_log.RequestContext,
        token: Any,
    ) -> Iterable[bytes]:
        """A code or refresh grant: the view's outcome computed once (token_outcome); a 200
        answered here once Django's headers for it are known, anything else handed to Django
        with the outcome, which the view returns instead of computing again."""
        response: HttpResponse | None = None
        error: Exception | None = None
        try:
            response = token_outcome(request)
        except Exception as exc:  # raised again by the view, in Django's cycle
            error = exc
        view_headers: Headers = list(response.items()) if response is not None else []
        succeeded = response is not None and response.status_code == 200 and not response.cookies
        stored = self._once_stored.get(key)
        if succeeded and stored is not None and stored[2] == view_headers:
            assert response is not None
            body = response.content
            request_log.end(context, token, 200)
            start_response(stored[0], _filled(stored[1], body, context.request_id))
            return _answer(body, self.handler_class)
        environ[PRECOMPUTED_KEY] = Precomputed(environ, response, error, context)
        request_log.abandon(token)  # Django writes this request's access line
        request_finished.send(sender=self.handler_class)
        if succeeded:
            assert response is not None
            return self._learn(_rewound(environ), start_response, key, response.content, view_headers)
        return self.application(_rewound(environ), start_response)

    @staticmethod
    def _body(request: WSGIRequest, path: str) -> bytes | None:
        """The successful answer's body from the view's own function, else None."""
        if path == USERINFO:
            outcome = userinfo_outcome(request)
            if isinstance(outcome, HttpResponse) or outcome[1] is not None:
                return None  # an error (or, never for Bearer, a DPoP proof's nonce to add)
            return json_body(outcome[0])
        if path == TOKEN:
            form = request.POST
            if (
                not native_enabled()
                or form.get("grant_type") != "client_credentials"
                or any(name in form for name in _ASSERTION)
            ):
                return None
            request.META.pop(JKT_META, None)  # as the token view: no proof, no key
            issued = client_credentials_outcome(request)
            return None if isinstance(issued, HttpResponse) else token_body(issued)
        described = introspection_outcome(request)
        return None if isinstance(described, HttpResponse) else json_body(described)

    def _learn(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        key: tuple[str, str, bool],
        body: bytes,
        view_headers: Headers | None = None,
    ) -> Iterable[bytes]:
        """Django answers; its headers are kept for this kind of request if its answer is the
        200 with the body computed here (`view_headers`: a code or refresh grant's, whose body
        Django returns as computed here, the very bytes)."""
        seen: dict[str, Any] = {}

        def recording_start_response(status: str, headers: Headers, *exc_info: Any) -> Any:
            seen["status"], seen["headers"] = status, list(headers)
            return start_response(status, headers, *exc_info)

        result = self.application(environ, recording_start_response)
        try:
            answered = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # request_finished, as the server would have sent it
        headers: Headers = seen.get("headers", [])
        if (
            seen.get("status", "").startswith("200 ")
            and (answered == body if view_headers is not None else _same_body(key[0], answered, body))
            and not any(name.lower() == "set-cookie" for name, _value in headers)
        ):
            template = _Template(headers)
            with self._lock:
                if view_headers is not None:
                    self._once_stored[key] = (seen["status"], template, view_headers)
                else:
                    self._stored[key] = (seen["status"], template)
        else:
            with self._lock:
                self._mismatches[key] = self._mismatches.get(key, 0) + 1
                if self._mismatches[key] == LEARNING_ATTEMPTS:
                    logger.warning(
                        "bearer path off for %s %s: Django's answers differ from its own", *key[1::-1]
                    )
        return [answered]
