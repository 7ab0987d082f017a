"""Start-up checks of the FranceConnect configuration (config/settings.py refuses the worst:
missing credentials or a plain-http issuer in production)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_franceconnect(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if (
        settings.PRODUCTION
        and settings.FRANCECONNECT_ENABLED
        and "dev-franceconnect.fr" in settings.FRANCECONNECT_ISSUER
    ):
        problems.append(
            Warning(
                "FRANCECONNECT_ISSUER points at a FranceConnect integration platform in production.",
                id="franceconnect.W001",
            )
        )
    return problems
