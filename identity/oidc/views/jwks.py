"""JSON Web Key Set (RFC 7517): every key that signs or may still verify a live token."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from identity.keys import published_jwks

# The serialized document, for as long as identity.keys serves the same (cached) one.
_serialized: tuple[object, bytes] | None = None


def _jwks_bytes() -> bytes:
    global _serialized
    document = published_jwks()
    cached = _serialized
    if cached is not None and cached[0] is document:
        return cached[1]
    body = json.dumps(document).encode()
    _serialized = (document, body)
    return body


@require_safe
def jwks(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(_jwks_bytes(), content_type="application/json")
    response["Access-Control-Allow-Origin"] = "*"
    # A rotated-in key is published OIDC_KEY_PUBLISH_AHEAD_SECONDS (≥ this max-age) before
    # it signs, so a relying party's cached copy always knows the signing key.
    response["Cache-Control"] = f"public, max-age={settings.OIDC_JWKS_MAX_AGE_SECONDS}"
    return response
