"""Start-up checks of the identity app's configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_production_secrets(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.PRODUCTION:
        return problems
    if not settings.ISSUER.startswith("https://"):
        problems.append(Error("OIDC_ISSUER must be https in production", id="identity.E001"))
    if settings.CLIENT_SECRET_HMAC_KEY.startswith("client-secret:"):
        problems.append(
            Warning(
                "CLIENT_SECRET_HMAC_KEY is derived from SECRET_KEY; set it on its own so that "
                "rotating SECRET_KEY does not invalidate every client secret.",
                id="identity.W001",
            )
        )
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        problems.append(Warning("SQLite in production: set DATABASE_URL to PostgreSQL", id="identity.W002"))
    if not settings.REDIS_URL:
        problems.append(Warning("REDIS_URL is not set: caches are per process", id="identity.W003"))
    return problems
