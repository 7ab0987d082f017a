from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from config import health
from config.metrics_view import metrics_view

# Redis or PostgreSQL unreachable: a readable 503, never a 500 page (config/errors.py).
handler500 = "config.errors.server_error_view"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus, METRICS_TOKEN (config/metrics_view.py)
    path("i18n/", include("django.conf.urls.i18n")),
    # The OpenAPI description of the REST APIs and its Swagger UI (config/api_docs.py).
    path("api/", include("config.api_docs_urls")),
    path("", include("identity.oidc.urls")),
    path("", include("identity.urls")),
    path("", include("consent.urls")),
    path("", include("connectors.urls")),
    path("", include("profiles.dpo_urls")),
    path("profiles/api/v1/", include("profiles.api.urls")),
    path("", include("profiles.urls")),
    path("admin/", admin.site.urls),
]

# Django's SuspiciousOperation answers (oversized or malformed requests): in the endpoint's
# language, 413 for a body over its limit (config/request_limits.py).
handler400 = "config.request_limits.bad_request"

if settings.DEMO_ENABLED:
    urlpatterns.append(path("demo/", include("identity.demo.urls")))
