"""The demo relying party at /demo/ (development only) and the data it runs on.

The `load_demo` command creates the resident and the partner client named here; the demo
pages (identity.demo.views) and the consent widget demo (consent.views_widget) look them up.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

DEMO_EMAIL = "camille.demo@example.org"
DEMO_PASSWORD = "Loire-et-Erdre-2026"
DEMO_CLIENT_NAME = "Démo – service partenaire"
# What the demo partner asks: the standard claims, and the profiles scopes its portal page
# (/demo/portail/) uses through the personalisation endpoint.
DEMO_SCOPES = ["openid", "profile", "email", "territory", "interests", "accessibility"]


def demo_client_file() -> Path:
    return settings.VAR_DIR / "demo-client.json"
