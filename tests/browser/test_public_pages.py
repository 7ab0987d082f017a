"""The privacy policy and the accessibility statement in a real browser, scanned with axe-core.

Both pages, in French and English, at a desktop width (1280 px) and the narrowest phone
width we support (360 px): WCAG 2.1 A/AA without violations, and no horizontal scrolling
at 360 px (WCAG 1.4.10, reflow). The footer links of the home page lead to them.
"""

from __future__ import annotations

from typing import Any

import pytest

from identity.oidc.sharing import purpose_for_client_scopes
from tests.browser.conftest import WIDTHS, axe_violations, horizontal_overflow

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = {
    "/confidentialite/": {"fr": "Politique de confidentialité", "en": "Privacy policy"},
    "/accessibilite/": {"fr": "Déclaration d'accessibilité", "en": "Accessibility statement"},
}


@pytest.fixture
def sharing_purpose(make_client: Any) -> None:
    """A partner's sharing purpose, so that the partners' section is not empty."""

    registered = make_client(name="Réseau des médiathèques de la métropole nantaise")
    purpose_for_client_scopes(client=registered.client, scopes=["openid", "profile", "email"])


@pytest.mark.parametrize("language", ["fr", "en"])
def test_public_pages_pass_axe_and_reflow(
    live_server: Any, chromium: Any, sharing_purpose: None, language: str
) -> None:
    for width in WIDTHS:
        context = chromium.new_context(
            locale="fr-FR" if language == "fr" else "en-GB", viewport={"width": width, "height": 800}
        )
        try:
            context.add_cookies([{"name": "language", "value": language, "url": live_server.url}])
            page = context.new_page()
            for path, headings in PAGES.items():
                page.goto(live_server.url + path)
                assert page.locator("html").get_attribute("lang") == language
                assert page.get_by_role("heading", level=1).inner_text() == headings[language]
                assert axe_violations(page) == [], (path, language, width)
                if width == 360:
                    assert horizontal_overflow(page) <= 0, (path, language)
        finally:
            context.close()


def test_footer_links_lead_to_the_pages(live_server: Any, page: Any) -> None:
    page.goto(live_server.url + "/")
    footer = page.get_by_role("navigation", name="Informations légales")
    footer.get_by_role("link", name="Accessibilité : non conforme").click()
    page.wait_for_url("**/accessibilite/")
    assert page.get_by_role("heading", level=1).inner_text() == "Déclaration d'accessibilité"

    page.get_by_role("navigation", name="Informations légales").get_by_role(
        "link", name="Gestion des cookies"
    ).click()
    page.wait_for_url("**/confidentialite/#cookies")
    assert page.get_by_role("heading", name="Les cookies de ce site").is_visible()

    page.get_by_role("navigation", name="Informations légales").get_by_role(
        "link", name="Politique de confidentialité"
    ).click()
    page.wait_for_url("**/confidentialite/")
    assert page.get_by_role("heading", level=1).inner_text() == "Politique de confidentialité"
