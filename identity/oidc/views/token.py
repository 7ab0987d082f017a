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

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views import TokenView as DotTokenView

from common import metrics
from identity.oidc.dpop import JKT_META, add_fresh_nonce, token_request_proof
from identity.oidc.token_endpoint import native_enabled, token_response

_GRANTS = frozenset({"authorization_code", "refresh_token", "client_credentials"})


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
        # Not super().post(): django-oauth-toolkit diverts the device-code grant type to a
        # path of its own (a 500 without device_code). We offer no device grant.
        request.META.pop(JKT_META, None)
        proof, refusal = token_request_proof(request)
        if refusal is not None:
            return refusal
        if proof is not None:
            request.META[JKT_META] = proof.jkt
        response = token_response(request) if native_enabled() else self._token_response(request)
        if response.status_code == 200:
            add_fresh_nonce(response, proof)
        if response.status_code == 200:
            grant = request.POST.get("grant_type", "")
            metrics.TOKENS_ISSUED.labels(grant if grant in _GRANTS else "other").inc()
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        if response.status_code == 401 and request.headers.get("Authorization", "").startswith("Basic "):
            # RFC 6749 §5.2: the challenge names the scheme the client used.
            response["WWW-Authenticate"] = 'Basic realm="token", error="invalid_client"'
        return response

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
