"""Mon compte > Informations personnelles in a real browser, scanned with axe-core.

The page, the edit form (blank, then with errors shown) and the email-change form, in French
and English, at 1280 px and 360 px: WCAG 2.1 A/AA without violations and no horizontal
scrolling at 360 px. The address is edited with the commune list as a resident would.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import WIDTHS, axe_violations, horizontal_overflow, sign_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

HEADINGS = {
    "/compte/informations/": {"fr": "Informations personnelles", "en": "Personal information"},
    "/compte/informations/modifier/": {
        "fr": "Modifier mes informations personnelles",
        "en": "Edit my personal information",
    },
    "/compte/informations/adresse-e-mail/": {
        "fr": "Changer mon adresse e-mail",
        "en": "Change my email address",
    },
}


def check(page: Any, language: str, width: int, where: str) -> None:
    assert page.locator("html").get_attribute("lang") == language
    assert axe_violations(page) == [], (where, language, width)
    if width == 360:
        assert horizontal_overflow(page) <= 0, (where, language)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_personal_information_pages_pass_axe_and_reflow(
    live_server: Any, chromium: Any, make_resident: Any, language: str
) -> None:
    resident = make_resident("camille.browser@example.org")
    resident.phone_number = "+33612345678"
    resident.street_address = "2 cours du Champ de Mars"
    resident.locality = "Nantes"
    resident.postal_code = "44000"
    resident.country = "France"
    resident.save()
    for width in WIDTHS:
        context = chromium.new_context(
            locale="fr-FR" if language == "fr" else "en-GB", viewport={"width": width, "height": 800}
        )
        try:
            context.add_cookies([{"name": "language", "value": language, "url": live_server.url}])
            page = context.new_page()
            sign_in(page, live_server.url, resident.email)
            for path, headings in HEADINGS.items():
                page.goto(live_server.url + path)
                assert page.get_by_role("heading", level=1).inner_text() == headings[language]
                check(page, language, width, path)
            # The edit form with errors shown (error summary, invalid fields described).
            page.goto(live_server.url + "/compte/informations/modifier/")
            page.locator("#id_phone_number").fill("06 12")
            page.locator("#id_commune").select_option("44143")
            page.locator("#id_postal_code").fill("44000")
            page.locator("main form[novalidate] button[type=submit]").click()
            page.wait_for_selector(".error-summary")
            assert page.locator("#id_postal_code").get_attribute("aria-invalid") == "true"
            check(page, language, width, "edit with errors")
            # The email-change form with an error.
            page.goto(live_server.url + "/compte/informations/adresse-e-mail/")
            page.locator("#id_new_email").fill(resident.email)
            page.locator("#id_current_password").fill(PASSWORD)
            page.locator("main form[novalidate] button[type=submit]").click()
            page.wait_for_selector(".error-summary")
            check(page, language, width, "email change with errors")
        finally:
            context.close()


def test_resident_edits_the_address_with_the_commune_list(
    live_server: Any, page: Any, make_resident: Any
) -> None:
    resident = make_resident("dominique.browser@example.org")
    sign_in(page, live_server.url, resident.email)
    page.goto(live_server.url + "/compte/")
    page.get_by_role("link", name="Voir et modifier mes informations personnelles").click()
    page.wait_for_url("**/compte/informations/")
    page.get_by_role("link", name="Modifier mon nom, mon téléphone ou mon adresse").click()
    page.get_by_label("Numéro et rue").fill("1 rue de la Paix")
    page.get_by_label("Commune (facultatif)", exact=True).select_option(label="Rezé")
    page.get_by_label("Code postal").fill("44400")
    page.get_by_label("Numéro de téléphone").fill("06 12 34 56 78")
    page.get_by_role("button", name="Enregistrer").click()
    page.wait_for_url("**/compte/informations/")
    text = page.locator("main").inner_text()
    assert "1 rue de la Paix" in text and "44400 Rezé" in text and "06 12 34 56 78" in text
    assert axe_violations(page) == []
    resident.refresh_from_db()
    assert (resident.locality, resident.postal_code, resident.phone_number) == (
        "Rezé",
        "44400",
        "+33612345678",
    )
