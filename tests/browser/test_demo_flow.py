"""The newcomer's path in a real browser: /demo/ → sign in → consent → verified claims.

Every page on the way is scanned with axe-core for WCAG 2.1 A/AA violations, on a
phone-sized viewport.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import call_command

from identity.demo import DEMO_EMAIL, DEMO_PASSWORD
from tests.browser.conftest import axe_violations

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_server(live_server: Any, settings: Any, tmp_path: Any) -> str:
    settings.ISSUER = live_server.url
    settings.VAR_DIR = tmp_path
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    call_command("ensure_signing_keys")
    call_command("load_demo")
    return live_server.url


def test_demo_sign_in_shows_verified_claims_and_pages_are_accessible(demo_server: str, page: Any) -> None:
    page.goto(demo_server + "/demo/")
    assert axe_violations(page) == []

    page.get_by_role("link", name="Se connecter avec le Compte unique métropolitain").click()
    page.wait_for_url("**/connexion/**")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert axe_violations(page) == []

    page.get_by_label("Adresse e-mail").fill(DEMO_EMAIL)
    page.get_by_label("Mot de passe").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter").click()

    page.wait_for_selector("form.decision")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Autoriser").click()

    page.wait_for_selector("#id-token-claims")
    assert axe_violations(page) == []
    claims = json.loads(page.locator("#id-token-claims").inner_text())
    userinfo = json.loads(page.locator("#userinfo").inner_text())
    assert claims["iss"] == demo_server
    assert claims["email"] == DEMO_EMAIL
    assert userinfo["sub"] == claims["sub"]
    assert userinfo["given_name"] == "Camille"


def test_refusing_consent_returns_to_the_partner_with_access_denied(demo_server: str, page: Any) -> None:
    page.goto(demo_server + "/demo/start")
    page.get_by_label("Adresse e-mail").fill(DEMO_EMAIL)
    page.get_by_label("Mot de passe").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("button", name="Refuser").click()
    page.wait_for_selector("[role=alert]")
    assert "access_denied" in page.locator("[role=alert]").inner_text()
    assert axe_violations(page) == []


def test_accessibility_scan_detects_violations(page: Any) -> None:
    # Guards the guard: an unlabeled field and an image without text must be reported.
    page.set_content(
        '<html lang="fr"><title>t</title><main><input type="text"><img src="x.png"></main></html>'
    )
    found = {violation["id"] for violation in axe_violations(page)}
    assert {"label", "image-alt"} <= found
