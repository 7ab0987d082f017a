"""JSON Web Key Set (RFC 7517): every key that signs or may still verify a live token."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from identity.keys import published_jwks


@require_safe
def jwks(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(published_jwks())
    response["Access-Control-Allow-Origin"] = "*"
    # A rotated-in key is published OIDC_KEY_PUBLISH_AHEAD_SECONDS (≥ this max-age) before
    # it signs, so a relying party's cached copy always knows the signing key.
    response["Cache-Control"] = f"public, max-age={settings.OIDC_JWKS_MAX_AGE_SECONDS}"
    return response
