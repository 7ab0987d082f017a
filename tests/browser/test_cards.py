"""Mon compte › Cartes et abonnements in a real browser against the SIP2 simulator: scanned
with axe-core in French and English at 1280 px and 360 px (no horizontal scrolling); a wrong
PIN shows its message in the error summary, then the right one links the card, which is
then updated and removed."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.models import PartnerConnector, PartnerLink
from tests.browser.conftest import check_page as check
from tests.browser.conftest import signed_in_page
from tests.connectors.conftest import VALID_CARD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_cards_page_passes_axe_and_reflow(
    live_server: Any, chromium: Any, resident: Any, library: PartnerConnector, language: str
) -> None:
    with signed_in_page(chromium, live_server.url, resident.email, language) as page:
        page.goto(live_server.url + "/compte/cartes/")
        heading = {"fr": "Cartes et abonnements", "en": "Cards and memberships"}[language]
        assert page.get_by_role("heading", level=1).inner_text() == heading
        check(page, language, "cards, empty")

        number = {"fr": "Numéro de carte", "en": "Card number"}[language]
        pin = {"fr": "Code PIN de la carte", "en": "Card PIN"}[language]
        page.get_by_label(number).fill(VALID_CARD[0])
        page.get_by_label(pin).fill("9999")
        page.get_by_role("button", name={"fr": "Lier ma carte", "en": "Link my card"}[language]).click()
        summary = page.locator(".error-summary")
        assert {"fr": "Le code PIN ne correspond pas", "en": "The PIN does not match"}[language] in (
            summary.inner_text()
        )
        assert page.get_by_label(pin).input_value() == ""  # a password field is never sent back
        check(page, language, "cards, wrong PIN")

        page.get_by_label(pin).fill(VALID_CARD[1])
        page.get_by_role("button", name={"fr": "Lier ma carte", "en": "Link my card"}[language]).click()
        page.wait_for_url("**/compte/cartes/")
        assert {"fr": "Votre carte est liée et valide.", "en": "Your card is linked and valid."}[
            language
        ] in (page.content())
        check(page, language, "cards, linked")
        page.get_by_role(
            "button", name={"fr": "Actualiser l'état", "en": "Update the status"}[language]
        ).click()
        page.wait_for_url("**/compte/cartes/")
        page.get_by_role(
            "button", name={"fr": "Retirer cette carte", "en": "Remove this card"}[language]
        ).click()
        page.wait_for_url("**/compte/cartes/")
        assert not PartnerLink.objects.exists()
