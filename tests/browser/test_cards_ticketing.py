"""Mon compte › Cartes et abonnements with a Carte Blanche, in a real browser against the
ticketing simulator: scanned with axe-core in French and English at 1280 px and 360 px; a
wrong birth date shows its message in the error summary, the right one links the card (its
reduced-price eligibility shown), which is then removed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.models import PartnerConnector, PartnerLink
from connectors.services import partner_connector_configure
from connectors.ticketing_simulator import TicketingSimulator
from tests.browser.conftest import WIDTHS, sign_in
from tests.browser.conftest import check_page as check
from tests.connectors.conftest import TICKETING_BIRTH, TICKETING_ELIGIBLE, ticketing_config

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ticketing(make_client: Any) -> Iterator[PartnerConnector]:
    with TicketingSimulator() as sim:
        rp = make_client(name="Billetterie culturelle", scopes=["openid", "eligibility"])
        yield partner_connector_configure(
            client=rp.client,
            kind="ticketing",
            label="Billetterie culturelle — Carte Blanche",
            config=ticketing_config(sim),
            secrets={"api_key": sim.api_key},
        )


@pytest.mark.parametrize("language", ["fr", "en"])
def test_linking_a_carte_blanche_passes_axe_and_reflow(
    live_server: Any, chromium: Any, resident: Any, ticketing: PartnerConnector, language: str
) -> None:
    context = chromium.new_context(
        locale="fr-FR" if language == "fr" else "en-GB", viewport={"width": WIDTHS[0], "height": 800}
    )
    try:
        context.add_cookies([{"name": "language", "value": language, "url": live_server.url}])
        page = context.new_page()
        sign_in(page, live_server.url, resident.email)
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
    finally:
        context.close()
