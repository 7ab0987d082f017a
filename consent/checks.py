"""Start-up checks of the consent ledger's configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from consent.crypto import decode_master_key


@register(Tags.security)
def check_master_key(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    configured = settings.CONSENT_MASTER_KEY
    if configured:
        try:
            decode_master_key(configured)
        except ImproperlyConfigured as exc:
            problems.append(Error(str(exc), id="consent.E001"))
        if configured == settings.KEY_ENCRYPTION_KEY:
            problems.append(
                Warning(
                    "CONSENT_MASTER_KEY equals KEY_ENCRYPTION_KEY: use distinct keys so that one leak "
                    "does not expose both the signing keys and the consent details.",
                    id="consent.W001",
                )
            )
    return problems


@register(Tags.security, deploy=True)
def check_production_consent(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.PRODUCTION:
        return problems
    if not settings.CONSENT_MASTER_KEY:
        problems.append(Error("CONSENT_MASTER_KEY is required in production", id="consent.E002"))
    if not settings.CONSENT_POLICY_URL.startswith("https://"):
        problems.append(Error("CONSENT_POLICY_URL must be an https URL in production", id="consent.E003"))
    return problems
