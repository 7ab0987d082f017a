"""Mon compte › Cartes et abonnements with a ticketing connector (Django's test client): the
Carte Blanche form (card number, birth date), a distinct message for each outcome, a
readable page at once when the platform is down, slow or answers garbage; the simulator
answers on a real socket."""

from __future__ import annotations

import html
import time
from typing import Any

import pytest
from django.utils import translation

from connectors.models import PartnerLink
from tests.connectors.conftest import (
    TICKETING_BIRTH,
    TICKETING_ELIGIBLE,
    TICKETING_NOT_ELIGIBLE,
    TICKETING_UNKNOWN,
)

pytestmark = pytest.mark.django_db

PAGE = "/compte/cartes/"
NOT_MATCHING = "Nous n'avons pas pu vérifier cette Carte Blanche avec cette date de naissance"


def _prefix(connector: Any) -> str:
    return f"c{connector.pk.hex[:8]}"


def _link(client: Any, connector: Any, card: str, born: str = TICKETING_BIRTH, **extra: Any) -> Any:
    prefix = _prefix(connector)
    return client.post(
        f"/compte/cartes/{connector.pk}/lier/",
        {f"{prefix}-card_number": card, f"{prefix}-birth_date": born},
        follow=True,
        **extra,
    )


def _text(response: Any) -> str:
    return " ".join(html.unescape(response.content.decode()).split())


def test_the_form_asks_the_card_and_the_birth_date(signed_in, ticketing):
    page = signed_in.get(PAGE).content.decode()
    prefix = _prefix(ticketing)
    assert f'name="{prefix}-card_number"' in page
    assert f'name="{prefix}-birth_date"' in page and 'type="date"' in page
    assert f'name="{prefix}-family_name"' not in page
    assert "Numéro de Carte Blanche" in page and "Aucune information sur vos revenus" in html.unescape(page)


def test_an_eligible_card_is_shown_with_its_end_date(signed_in, ticketing):
    text = _text(_link(signed_in, ticketing, TICKETING_ELIGIBLE))
    assert "Votre Carte Blanche est liée : droit aux tarifs réduits « Carte Blanche" in text
    assert "droit ouvert" in text and "Valable jusqu'au" in text and "•••• 0001" in text
    assert PartnerLink.objects.get().status == "valid"


def test_a_card_without_eligibility_is_linked_with_a_warning(signed_in, ticketing):
    text = _text(_link(signed_in, ticketing, TICKETING_NOT_ELIGIBLE))
    assert "Votre Carte Blanche est liée, mais elle ne vous donne pas droit aux tarifs réduits" in text
    assert "pas de droit en cours" in text


@pytest.mark.parametrize(
    ("card", "born", "expected"),
    [
        (TICKETING_UNKNOWN, TICKETING_BIRTH, NOT_MATCHING),
        (TICKETING_ELIGIBLE, "1991-01-01", NOT_MATCHING),
        ("12", TICKETING_BIRTH, "Un numéro de Carte Blanche compte de 8 à 20 chiffres"),
    ],
)
def test_each_refusal_has_its_message(signed_in, ticketing, card, born, expected):
    response = _link(signed_in, ticketing, card, born)
    assert response.status_code == 400
    assert expected in _text(response)
    assert not PartnerLink.objects.exists()


def test_a_missing_birth_date_is_a_form_error(signed_in, ticketing, ticketing_sim):
    response = _link(signed_in, ticketing, TICKETING_ELIGIBLE, born="")
    assert response.status_code == 400
    assert ticketing_sim.counts["/v1/eligibility-checks"] == 0


@pytest.mark.parametrize("mode", ["down", "slow", "error"])
def test_the_platform_unavailable_gives_a_readable_page_quickly(signed_in, ticketing, ticketing_sim, mode):
    if mode == "down":
        ticketing_sim.stop()
    else:
        ticketing_sim.faults.mode = mode
    started = time.monotonic()
    response = _link(signed_in, ticketing, TICKETING_ELIGIBLE)
    assert time.monotonic() - started < 1.9  # the platform takes 2 s when slow: not waited for
    assert response.status_code == 503
    assert "La billetterie ne répond pas pour le moment. Rien n'a été enregistré" in _text(response)


def test_garbage_says_unexpected(signed_in, ticketing, ticketing_sim):
    ticketing_sim.faults.mode = "garbage"
    response = _link(signed_in, ticketing, TICKETING_ELIGIBLE)
    assert response.status_code == 503
    assert "La billetterie a répondu de façon inattendue" in _text(response)


def test_refresh_shows_the_current_state_or_says_it_failed(signed_in, ticketing, ticketing_sim):
    _link(signed_in, ticketing, TICKETING_ELIGIBLE)
    link = PartnerLink.objects.get()
    ticketing_sim.state.cards[TICKETING_ELIGIBLE].eligibility = None
    text = _text(signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True))
    assert "Statut actualisé." in text and "ne vous donne pas droit aux tarifs réduits" in text
    ticketing_sim.faults.mode = "slow"
    started = time.monotonic()
    text = _text(signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True))
    assert time.monotonic() - started < 1.9
    assert "L'état de votre Carte Blanche n'a pas pu être actualisé" in text
    ticketing_sim.faults.mode = ""
    del ticketing_sim.state.cards[TICKETING_ELIGIBLE]
    text = _text(signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True))
    assert "La billetterie ne connaît plus cette Carte Blanche" in text
    assert "carte inconnue de la billetterie" in text


def test_the_messages_are_translated(signed_in, ticketing):
    with translation.override("en"):
        response = _link(signed_in, ticketing, TICKETING_UNKNOWN, HTTP_ACCEPT_LANGUAGE="en")
        text = _text(response)
        assert "We could not check this Carte Blanche with this date of birth" in text
        assert "Carte Blanche number" in text
        linked = _text(_link(signed_in, ticketing, TICKETING_ELIGIBLE, HTTP_ACCEPT_LANGUAGE="en"))
    assert "Your Carte Blanche is linked: reduced prices" in linked
