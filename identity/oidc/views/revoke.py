"""Token revocation (RFC 7009)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views import RevokeTokenView as DotRevokeTokenView


@method_decorator(csrf_exempt, name="dispatch")
class RevokeTokenView(DotRevokeTokenView):
    http_method_names = ["post", "options"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().post(request, *args, **kwargs)
        # RFC 7009 §2.2: success is a 200 with no content. Without content there is no media
        # type either (RFC 9110 §8.3), rather than Django's default text/html, which browser
        # libraries (oidc-client-ts) reject as an unexpected answer.
        if isinstance(response, HttpResponse) and not response.content:
            del response["Content-Type"]
        return response
