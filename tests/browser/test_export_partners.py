"""Mon compte › Copie de mes données with partners' states, in a real browser, scanned with
axe-core: the library answered over SIP2 and was asked by email (its data-protection contact),
Naolib is down (its request is retried). The states are listed on the page, in French and
English, with no WCAG 2.1 A/AA violation at 1280 px and 360 px."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from connectors.links import link_create
from connectors.models import PartnerConnector
from connectors.outbox import relay_once
from connectors.services import partner_connector_configure
from connectors.sip2.simulator import Sip2Simulator
from connectors.transport import link_secret
from connectors.transport_simulator import TransportSimulator
from consent import rights_requests
from tests.browser.conftest import check_page as check
from tests.browser.conftest import sign_in
from tests.connectors.conftest import (
    TRANSPORT_BIRTH,
    TRANSPORT_NAME,
    TRANSPORT_VALID,
    VALID_CARD,
    library_config,
    transport_config,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def partners(make_client: Any, resident: Any) -> Iterator[tuple[PartnerConnector, PartnerConnector]]:
    """The resident's library card (SIP2 + email connectors) and Libertan card (Naolib)."""
    with Sip2Simulator() as sip2, TransportSimulator() as naolib:
        library_rp = make_client(name="Portail des bibliothèques", scopes=["openid", "library_card"])
        library = partner_connector_configure(
            client=library_rp.client,
            kind="library",
            label="Bibliothèques de Nantes Métropole",
            config=library_config(sip2),
            secrets={"login_password": sip2.login_password},
        )
        partner_connector_configure(
            client=library_rp.client,
            kind="email",
            label="Bibliothèques — protection des données",
            config={"contact_email": "dpo@bibliotheques.example"},
            secrets={},
        )
        transport_rp = make_client(name="Naolib", scopes=["openid", "transport_subscription"])
        transport = partner_connector_configure(
            client=transport_rp.client,
            kind="transport",
            label="Naolib — carte Libertan",
            config=transport_config(naolib),
            secrets={"api_key": naolib.api_key},
        )
        link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
        secret = link_secret(family_name=TRANSPORT_NAME, birth_date=date.fromisoformat(TRANSPORT_BIRTH))
        link_create(user=resident, partner_connector=transport, reference=TRANSPORT_VALID, secret=secret)
        naolib.stop()
        yield library, transport


TEXTS = {
    "fr": {
        "ask": "Demander une copie de mes données",
        "heading": "Vos données chez nos services partenaires",
        "email": "demande envoyée par e-mail au délégué à la protection des données du service",
        "down": "le service ne répond pas pour le moment",
    },
    "en": {
        "ask": "Ask for a copy of my data",
        "heading": "Your data held by our partner services",
        "email": "request sent by email to the service's data protection officer",
        "down": "the service is not answering at the moment",
    },
}


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_export_page_with_partner_states_passes_axe(
    live_server: Any, chromium: Any, resident: Any, partners: Any, language: str, settings: Any
) -> None:
    settings.RIGHTS_EXPORT_PARTNER_WAIT = 0
    texts = TEXTS[language]
    context = chromium.new_context(
        locale="fr-FR" if language == "fr" else "en-GB", viewport={"width": 1280, "height": 800}
    )
    try:
        context.add_cookies([{"name": "language", "value": language, "url": live_server.url}])
        page = context.new_page()
        sign_in(page, live_server.url, resident.email)
        page.goto(live_server.url + "/compte/export/")
        page.get_by_role("button", name=texts["ask"]).click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", name=texts["heading"]).is_visible()
        check(page, language, "waiting for partners")

        relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT])
        assert relay_once(kinds=[rights_requests.KIND_EXPORT]).delivered == 1
        page.reload()
        body = page.locator("main").inner_text()
        assert texts["email"] in body and texts["down"] in body
        check(page, language, "ready, partners listed")
    finally:
        context.close()
