"""Mon compte › Cartes et abonnements with a Libertan card, in a real browser against the Naolib
simulator: scanned with axe-core in French and English at 1280 px and 360 px; details that do
not match show their message in the error summary, the right ones link the card (the family
name prefilled from the account), which is then removed."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.models import PartnerConnector, PartnerLink
from tests.browser.conftest import check_page as check
from tests.browser.conftest import signed_in_page
from tests.connectors.conftest import TRANSPORT_BIRTH, TRANSPORT_VALID

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_linking_a_libertan_card_passes_axe_and_reflow(
    live_server: Any, chromium: Any, resident: Any, transport: PartnerConnector, language: str
) -> None:
    with signed_in_page(chromium, live_server.url, resident.email, language) as page:
        page.goto(live_server.url + "/compte/cartes/")
        check(page, language, "cards, transport, empty")

        number = {"fr": "Numéro de carte Libertan", "en": "Libertan card number"}[language]
        name = {"fr": "Nom de famille", "en": "Family name"}[language]
        born = {"fr": "Date de naissance", "en": "Date of birth"}[language]
        assert page.get_by_label(name).input_value() == resident.family_name
        page.get_by_label(number).fill(TRANSPORT_VALID)
        page.get_by_label(born).fill("1991-01-01")
        page.get_by_role("button", name={"fr": "Lier ma carte", "en": "Link my card"}[language]).click()
        summary = page.locator(".error-summary")
        expected = {
            "fr": "Nous n'avons pas pu vérifier cette carte avec ces informations",
            "en": "We could not check this card with these details",
        }[language]
        assert expected in summary.inner_text()
        check(page, language, "cards, transport, not matching")

        page.get_by_label(born).fill(TRANSPORT_BIRTH)
        page.get_by_role("button", name={"fr": "Lier ma carte", "en": "Link my card"}[language]).click()
        page.wait_for_url("**/compte/cartes/")
        linked = {"fr": "Votre carte Libertan est liée", "en": "Your Libertan card is linked"}[language]
        assert linked in page.content()
        check(page, language, "cards, transport, linked")
        page.get_by_role(
            "button", name={"fr": "Retirer cette carte", "en": "Remove this card"}[language]
        ).click()
        page.wait_for_url("**/compte/cartes/")
        assert not PartnerLink.objects.exists()
