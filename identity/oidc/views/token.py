"""Token endpoint (RFC 6749 §3.2): authorization code, client credentials, refresh.

Answered by our own implementation (identity/oidc/token_endpoint.py); with
settings.TOKEN_ENDPOINT = "oauthlib", by django-oauth-toolkit and oauthlib, the reference
the differential test compares it with (tests/oidc/test_token_differential.py).

A DPoP proof (RFC 9449) is checked here, once, before either implementation runs (a
refused proof or a missing nonce must not consume the code or the refresh token): both
then read the key's thumbprint (identity/oidc/dpop.JKT_META) and bind what they issue
(Validator.validate_token_dpop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views import TokenView as DotTokenView

from common import metrics, request_log
from identity.oidc.dpop import JKT_META, add_fresh_nonce, token_request_proof
from identity.oidc.token_endpoint import native_enabled, token_response

_GRANTS = frozenset({"authorization_code", "refresh_token", "client_credentials"})
# The WSGI environ key under which the bearer path (config/bearer_path.py) hands Django the
# outcome it computed for a code or refresh grant. A client cannot set it (the headers a
# client sends are HTTP_* keys), and only a `Precomputed` made for this very environ counts.
PRECOMPUTED_KEY = "cum.token_outcome"


def token_outcome(
    request: HttpRequest, reference: Callable[[HttpRequest], HttpResponse] | None = None
) -> HttpResponse:
    """The token endpoint's whole answer to this POST: the DPoP proof's check, the grant
    (ours, or `reference`, django-oauth-toolkit's, when the native endpoint is off), the
    metric and the headers the view adds. The view and the bearer path both call it."""
    request.META.pop(JKT_META, None)
    proof, refusal = token_request_proof(request)
    if refusal is not None:
        return refusal
    if proof is not None:
        request.META[JKT_META] = proof.jkt
    response = token_response(request) if native_enabled() or reference is None else reference(request)
    if response.status_code == 200:
        add_fresh_nonce(response, proof)
        grant = request.POST.get("grant_type", "")
        metrics.TOKENS_ISSUED.labels(grant if grant in _GRANTS else "other").inc()
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    if response.status_code == 401 and request.headers.get("Authorization", "").startswith("Basic "):
        # RFC 6749 §5.2: the challenge names the scheme the client used.
        response["WWW-Authenticate"] = 'Basic realm="token", error="invalid_client"'
    return response


class Precomputed:
    """What the bearer path computed for one request (the response, or the exception the
    computation raised), and the request context it was computed in: the view gives it back
    instead of computing again (a code is claimed and a refresh token rotated only once)."""

    __slots__ = ("client_id", "environ", "error", "request_id", "response", "started")

    def __init__(
        self,
        environ: dict[str, Any],
        response: HttpResponse | None,
        error: BaseException | None,
        context: request_log.RequestContext | None,
    ) -> None:
        self.environ = environ
        self.response = response
        self.error = error
        self.request_id = context.request_id if context is not None else None
        self.client_id = context.client_id if context is not None else ""
        self.started = context.started if context is not None else None

    def answer(self) -> HttpResponse:
        context = request_log.current()
        if context is not None and self.request_id is not None and self.started is not None:
            # The access line and X-Request-ID name the request id the computation logged
            # under; its duration counts from the computation's start.
            context.request_id, context.started = self.request_id, self.started
            request_log.set_client_id(self.client_id)
        if self.error is not None:
            raise self.error  # as if raised in the view: Django answers it as before
        assert self.response is not None
        return self.response


class TokenView(DotTokenView):
    http_method_names = ["post", "options"]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # The attributes django-oauth-toolkit's class decorators put on its dispatch, set
        # once on the view function instead (method_decorator wraps dispatch at every call).
        return login_not_required(csrf_exempt(super().as_view(**initkwargs)))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return View.dispatch(self, request, *args, **kwargs)  # not its per-request wrappers

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        handed = request.META.pop(PRECOMPUTED_KEY, None)
        if isinstance(handed, Precomputed) and handed.environ is request.META:
            return handed.answer()  # computed on the bearer path for this very request
        return token_outcome(request, self._token_response)

    def _token_response(self, request: HttpRequest) -> HttpResponse:
        # The oauthlib path: django-oauth-toolkit's authorization_flow_token_response, without
        # its re-SELECT of the access token just issued: that read only feeds the
        # `app_authorized` signal, which nothing in this project listens to (do not connect a
        # receiver to it: it would never fire).
        _url, headers, body, status = self.create_token_response(request)
        response = HttpResponse(content=body, status=status)
        for name, value in headers.items():
            response[name] = value
        return response
