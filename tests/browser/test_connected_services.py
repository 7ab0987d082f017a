"""Mon compte, "Services connectés", in a real browser, scanned with axe-core.

A resident who allowed a partner (and used an internal service) signs in, opens the page
from "Mon compte", and finds it without WCAG 2.1 A/AA violations in French and English, at
1280 px and 360 px (no horizontal scrolling there); then withdraws the partner's access
with a click: the page says so, the partner's token no longer opens userinfo, and the page
is still without violations.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as BrowserClient

from tests.browser.conftest import WIDTHS, axe_violations, horizontal_overflow, sign_in, signed_in_page
from tests.conftest import OIDCFlow
from tests.oidc.conftest import complete_flow, userinfo

pytestmark = pytest.mark.django_db(transaction=True)

PARTNER = "Réseau des médiathèques de la métropole nantaise"


@pytest.fixture
def partner_tokens(make_client: Any, signed_in: BrowserClient) -> dict[str, Any]:
    """The resident allowed a partner (consent screen) and told about an internal service."""
    partner = make_client(
        name=PARTNER,
        policy_uri="https://rp.example.org/privacy",
        backchannel_logout_uri="https://rp.example.org/backchannel-logout",
    )
    tokens = complete_flow(OIDCFlow(signed_in, partner))
    complete_flow(OIDCFlow(signed_in, make_client(name="Déchèteries de la métropole", is_internal=True)))
    return tokens


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_page_passes_axe_and_reflows(
    live_server: Any, chromium: Any, resident: Any, partner_tokens: dict[str, Any], language: str
) -> None:
    with signed_in_page(chromium, live_server.url, resident.email, language) as page:
        page.goto(live_server.url + "/compte/services/")
        assert page.locator("html").get_attribute("lang") == language
        heading = {"fr": "Services connectés", "en": "Connected services"}[language]
        assert page.get_by_role("heading", level=1).inner_text() == heading
        assert page.get_by_role("heading", level=2, name=PARTNER).is_visible()
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            assert axe_violations(page) == [], (language, width)
            if width == 360:
                assert horizontal_overflow(page) <= 0, language


def test_withdrawing_with_clicks(
    live_server: Any, page: Any, resident: Any, partner_tokens: dict[str, Any]
) -> None:
    sign_in(page, live_server.url, resident.email)
    page.goto(live_server.url + "/compte/")
    page.get_by_role("link", name="Voir les services connectés à mon compte et leur retirer l'accès").click()
    page.wait_for_url("**/compte/services/")
    assert axe_violations(page) == []

    page.get_by_role("button", name=f"Retirer l'accès ({PARTNER})").click()
    page.wait_for_url("**/compte/services/**")
    assert "Vous avez retiré l'accès de " + PARTNER in page.get_by_role("status").inner_text()
    partner = page.locator("section", has=page.get_by_role("heading", level=2, name=PARTNER))
    assert "accès retiré" in partner.inner_text()
    assert partner.get_by_role("button").count() == 0
    assert partner.get_by_role("link", name="Télécharger le reçu du retrait").count() == 1
    assert axe_violations(page) == []
    assert userinfo(partner_tokens["access_token"]).status_code == 401
