"""Mon compte › Cartes et abonnements with a Libertan card, in a real browser against the Naolib
simulator: scanned with axe-core in French and English at 1280 px and 360 px; details that do
not match show their message in the error summary, the right ones link the card (the family
name prefilled from the account), which is then removed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.models import PartnerConnector, PartnerLink
from connectors.services import partner_connector_configure
from connectors.transport_simulator import TransportSimulator
from tests.browser.conftest import WIDTHS, sign_in
from tests.browser.conftest import check_page as check
from tests.connectors.conftest import TRANSPORT_BIRTH, TRANSPORT_VALID, transport_config

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def transport(make_client: Any) -> Iterator[PartnerConnector]:
    with TransportSimulator() as sim:
        rp = make_client(name="Naolib", scopes=["openid", "transport_subscription"])
        yield partner_connector_configure(
            client=rp.client,
            kind="transport",
            label="Naolib — carte Libertan",
            config=transport_config(sim),
            secrets={"api_key": sim.api_key},
        )


@pytest.mark.parametrize("language", ["fr", "en"])
def test_linking_a_libertan_card_passes_axe_and_reflow(
    live_server: Any, chromium: Any, resident: Any, transport: PartnerConnector, language: str
) -> None:
    context = chromium.new_context(
        locale="fr-FR" if language == "fr" else "en-GB", viewport={"width": WIDTHS[0], "height": 800}
    )
    try:
        context.add_cookies([{"name": "language", "value": language, "url": live_server.url}])
        page = context.new_page()
        sign_in(page, live_server.url, resident.email)
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
    finally:
        context.close()
