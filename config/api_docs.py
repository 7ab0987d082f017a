"""The OpenAPI description of our REST APIs and its documentation page.

- GET /api/schema/   the OpenAPI 3.1 document (drf-spectacular): YAML by default, JSON with
                     `?format=json` or `Accept: application/vnd.oai.openapi+json` (or
                     `application/json`). Public (config/settings.py SPECTACULAR_SETTINGS says why).
- GET /api/docs/     Swagger UI over it. Its files come from drf-spectacular-sidecar and are
                     our own static files (whitenoise in production): no CDN, works offline.

The page keeps the site's strict Content-Security-Policy (identity.middleware.DEFAULT_CSP:
scripts and styles from our origin only, no inline code): our template has no inline script
or style, and Swagger UI's start-up script is a second request to the same page
(`?script`, drf-spectacular's split view) rather than an inline <script>. Swagger UI styles
its elements through the DOM (element.style), which style-src does not restrict. X-Frame-Options,
Cross-Origin-Opener-Policy and the rest stay as on every page.

Only DRF views are described: the OpenID Connect protocol endpoints are plain Django views,
described by the discovery document (/.well-known/openid-configuration).
"""

from __future__ import annotations

from typing import Any

from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

# Registers the session + CSRF security schemes with drf-spectacular before any generation.
import common.openapi  # noqa: F401


class SchemaView(SpectacularAPIView):
    def _get_filename(self, request: Request, version: Any) -> str:
        # An ASCII name, whatever the API's title.
        return "openapi." + self.perform_content_negotiation(request, force=True)[0].format

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and response.status_code >= 400:
            # A refusal (405 for a POST, 400 for a malformed query…) is a problem in JSON: the
            # document's YAML and OpenAPI renderers cannot render one (a 500 otherwise).
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = "application/problem+json"
        return response


@method_decorator(never_cache, name="get")
class DocsView(SpectacularSwaggerSplitView):
    """Swagger UI. `?script` answers its start-up script, which carries this browser's CSRF
    token for "Try it out" on the session APIs: never cached."""

    template_name = "api_docs/swagger_ui.html"
    title = "Compte unique métropolitain API"
