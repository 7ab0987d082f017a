"""Mon compte › Cartes et abonnements with a transport connector (Django's test client): the
form (card number, family name prefilled, birth date), a distinct message for each outcome,
a readable page when Naolib is down or slow; the simulator answers on a real socket."""

from __future__ import annotations

import html
import time
from typing import Any

import pytest
from django.utils import translation

from connectors.models import PartnerLink
from tests.connectors.conftest import (
    TRANSPORT_BIRTH,
    TRANSPORT_EXPIRED,
    TRANSPORT_NAME,
    TRANSPORT_NO_CONTRACT,
    TRANSPORT_REPLACED,
    TRANSPORT_UNKNOWN,
    TRANSPORT_VALID,
)

pytestmark = pytest.mark.django_db

PAGE = "/compte/cartes/"


def _prefix(connector: Any) -> str:
    return f"c{connector.pk.hex[:8]}"


def _link(
    client: Any, connector: Any, card: str, name: str = TRANSPORT_NAME, born: str = TRANSPORT_BIRTH
) -> Any:
    prefix = _prefix(connector)
    return client.post(
        f"/compte/cartes/{connector.pk}/lier/",
        {f"{prefix}-card_number": card, f"{prefix}-family_name": name, f"{prefix}-birth_date": born},
        follow=True,
    )


def _text(response: Any) -> str:
    return " ".join(html.unescape(response.content.decode()).split())


def test_the_form_asks_the_card_the_family_name_prefilled_and_the_birth_date(signed_in, transport):
    page = signed_in.get(PAGE).content.decode()
    prefix = _prefix(transport)
    assert f'name="{prefix}-card_number"' in page
    assert f'name="{prefix}-family_name"' in page and 'value="Martin"' in page
    assert f'name="{prefix}-birth_date"' in page and 'type="date"' in page
    assert "Naolib — carte Libertan" in page


def test_a_valid_subscription_is_shown_with_its_end_date(signed_in, transport):
    response = _link(signed_in, transport, TRANSPORT_VALID)
    text = _text(response)
    assert (
        "Votre carte Libertan est liée : abonnement « Abonnement annuel Libertan » valable jusqu'au" in text
    )
    assert "Valable jusqu'au" in text and "•••• 0001" in text
    assert PartnerLink.objects.get().status == "valid"


def test_an_expired_subscription_is_linked_with_a_warning(signed_in, transport):
    text = _text(_link(signed_in, transport, TRANSPORT_EXPIRED))
    assert "mais son abonnement « Abonnement mensuel » a expiré le" in text


@pytest.mark.parametrize(
    ("card", "name", "expected"),
    [
        (TRANSPORT_NO_CONTRACT, TRANSPORT_NAME, "Aucun abonnement n'est enregistré sur cette carte Libertan"),
        (TRANSPORT_UNKNOWN, TRANSPORT_NAME, "Nous n'avons pas pu vérifier cette carte avec ces informations"),
        (TRANSPORT_VALID, "Dupont", "Nous n'avons pas pu vérifier cette carte avec ces informations"),
        (TRANSPORT_REPLACED, TRANSPORT_NAME, "remplacée par la carte dont le numéro se termine par 0001"),
        ("12", TRANSPORT_NAME, "Un numéro de carte Libertan compte de 8 à 20 chiffres"),
    ],
)
def test_each_refusal_has_its_own_message(signed_in, transport, card, name, expected):
    response = _link(signed_in, transport, card, name)
    assert response.status_code == 400
    assert expected in _text(response)
    assert not PartnerLink.objects.exists()


def test_a_missing_birth_date_is_a_form_error(signed_in, transport, transport_sim):
    response = _link(signed_in, transport, TRANSPORT_VALID, born="")
    assert response.status_code == 400
    assert transport_sim.counts["/v1/card-checks"] == 0


@pytest.mark.parametrize("mode", ["down", "slow", "error"])
def test_naolib_unavailable_gives_a_readable_page_quickly(signed_in, transport, transport_sim, mode):
    if mode == "down":
        transport_sim.stop()
    else:
        transport_sim.faults.mode = mode
    started = time.monotonic()
    response = _link(signed_in, transport, TRANSPORT_VALID)
    assert time.monotonic() - started < 1.9
    assert response.status_code == 503
    assert "Le service Naolib ne répond pas pour le moment. Rien n'a été enregistré" in _text(response)
    assert not PartnerLink.objects.exists()


def test_garbage_says_unexpected(signed_in, transport, transport_sim):
    transport_sim.faults.mode = "garbage"
    response = _link(signed_in, transport, TRANSPORT_VALID)
    assert response.status_code == 503
    assert "Le service Naolib a répondu de façon inattendue" in _text(response)


def test_a_failed_refresh_says_so_for_naolib(signed_in, transport, transport_sim):
    _link(signed_in, transport, TRANSPORT_VALID)
    link = PartnerLink.objects.get()
    transport_sim.faults.mode = "error"
    response = signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True)
    assert "L'état de l'abonnement n'a pas pu être actualisé" in _text(response)


def test_the_messages_are_translated(signed_in, transport):
    prefix = _prefix(transport)
    with translation.override("en"):
        response = signed_in.post(
            f"/compte/cartes/{transport.pk}/lier/",
            {
                f"{prefix}-card_number": TRANSPORT_NO_CONTRACT,
                f"{prefix}-family_name": TRANSPORT_NAME,
                f"{prefix}-birth_date": TRANSPORT_BIRTH,
            },
            HTTP_ACCEPT_LANGUAGE="en",
        )
    assert "No subscription is recorded on this Libertan card" in _text(response)


def test_a_card_replaced_since_linking_says_so_after_a_refresh(signed_in, transport, transport_sim):
    _link(signed_in, transport, TRANSPORT_VALID)
    link = PartnerLink.objects.get()
    transport_sim.state.cards[TRANSPORT_VALID].replaced_by = "2501000000000077"
    text = _text(signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True))
    assert "Naolib ne connaît plus cette carte (elle a peut-être été remplacée)" in text
    assert "Remplacée par" in text and "la carte se terminant par •••• 0077" in text


def test_a_contract_gone_since_linking_says_so_after_a_refresh(signed_in, transport, transport_sim):
    _link(signed_in, transport, TRANSPORT_VALID)
    link = PartnerLink.objects.get()
    transport_sim.state.cards[TRANSPORT_VALID].contract = None
    text = _text(signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True))
    assert "Votre carte Libertan est liée, mais elle ne porte plus d'abonnement." in text
    assert "aucun abonnement sur cette carte" in text
