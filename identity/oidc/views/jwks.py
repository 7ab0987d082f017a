"""JSON Web Key Set (RFC 7517): every key that signs or may still verify a live token."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from identity.keys import published_jwks


@require_safe
def jwks(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(published_jwks())
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "public, max-age=300"
    return response
