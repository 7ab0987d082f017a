"""The base of the APIs partner pages call from the browser (anonymous, cross-origin): the
cookie-consent API (consent.api.views) and the profiles' partner API (profiles.api.views).

- CORS per partner client: the `client_id` of the address names the client whose registered
  origins (`allowed_origins`) get the CORS headers, so that the preflight (OPTIONS, which has
  no body) can be answered; a view that reads the client from the body sets `cors_client`.
- Every answer is `Cache-Control: no-store`.
- No session, no cookie set; DRF's default authentication is off (a subclass may add its own,
  e.g. a partner back-end's Bearer token, and say for which requests CORS applies).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from consent.api import cors
from consent.api.problems import api_problem
from consent.api.selectors import client_by_client_id


class PartnerPageAPIView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    parser_classes: list[Any] = []  # bodies are read with consent.api.problems.json_object_body

    cors_client: Any = None
    origin: str = ""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.origin = cors.request_origin(request)
        self.cors_client = client_by_client_id(request.query_params.get("client_id"))
        super().initial(request, *args, **kwargs)

    # The preflight answer is a plain HttpResponse (DRF's finalize_response takes one); the
    # stubs of View and APIView disagree on this method's request type anyway.
    @extend_schema(exclude=True)
    def options(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        response = HttpResponse(status=204)
        return cors.apply_cors(response, client=self.cors_client, origin=self.origin, preflight=True)

    def cors_applies(self, request: Request) -> bool:
        """Whether the answer gets the CORS headers of `cors_client` (the preflight has its own)."""
        return request.method != "OPTIONS"

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        if self.cors_applies(request):
            cors.apply_cors(response, client=self.cors_client, origin=self.origin)
        return response


def rate_limited(retry_after: int, detail: str) -> JsonResponse:
    """429 urn:cum:problem:rate_limited with `Retry-After` (seconds)."""
    response = api_problem(429, "rate_limited", _("Trop de requêtes"), detail)
    response["Retry-After"] = str(retry_after)
    return response
