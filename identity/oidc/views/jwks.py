"""JSON Web Key Set (RFC 7517): every key that signs or may still verify a live token.

Served from precomputed bytes with a strong ETag (identity.keys.published_jwks_bytes), also
before Django's request cycle (config/lean_path.py).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from identity.keys import published_jwks_bytes
from identity.oidc.views.documents import document_response


@require_safe
def jwks(request: HttpRequest) -> HttpResponse:
    published = published_jwks_bytes()
    # A rotated-in key is published OIDC_KEY_PUBLISH_AHEAD_SECONDS (≥ this max-age) before
    # it signs, so a relying party's cached copy always knows the signing key.
    return document_response(
        request, body=published.body, etag=published.etag, max_age=settings.OIDC_JWKS_MAX_AGE_SECONDS
    )
