"""Mon compte › Cartes et abonnements with a Carte Blanche, in a real browser against the
ticketing simulator: scanned with axe-core in French and English at 1280 px and 360 px; a
wrong birth date shows its message in the error summary, the right one links the card (its
reduced-price eligibility shown), which is then removed."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.models import PartnerConnector, PartnerLink
from tests.browser.conftest import check_page as check
from tests.browser.conftest import signed_in_page
from tests.connectors.conftest import TICKETING_BIRTH, TICKETING_ELIGIBLE

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_linking_a_carte_blanche_passes_axe_and_reflow(
    live_server: Any, chromium: Any, resident: Any, ticketing: PartnerConnector, language: str
) -> None:
    with signed_in_page(chromium, live_server.url, resident.email, language) as page:
        page.goto(live_server.url + "/compte/cartes/")
        check(page, language, "cards, ticketing, empty")

        number = {"fr": "Numéro de Carte Blanche", "en": "Carte Blanche number"}[language]
        born = {"fr": "Date de naissance du titulaire", "en": "Cardholder's date of birth"}[language]
        link = {"fr": "Lier ma carte", "en": "Link my card"}[language]
        page.get_by_label(number).fill(TICKETING_ELIGIBLE)
        page.get_by_label(born).fill("1991-01-01")
        page.get_by_role("button", name=link).click()
        expected = {
            "fr": "Nous n'avons pas pu vérifier cette Carte Blanche avec cette date de naissance",
            "en": "We could not check this Carte Blanche with this date of birth",
        }[language]
        assert expected in page.locator(".error-summary").inner_text()
        check(page, language, "cards, ticketing, not matching")

        page.get_by_label(born).fill(TICKETING_BIRTH)
        page.get_by_role("button", name=link).click()
        page.wait_for_url("**/compte/cartes/")
        linked = {"fr": "Votre Carte Blanche est liée", "en": "Your Carte Blanche is linked"}[language]
        assert linked in page.content()
        assert {"fr": "droit ouvert", "en": "entitled"}[language] in page.content()
        check(page, language, "cards, ticketing, linked")
        page.get_by_role(
            "button", name={"fr": "Retirer cette carte", "en": "Remove this card"}[language]
        ).click()
        page.wait_for_url("**/compte/cartes/")
        assert not PartnerLink.objects.exists()
