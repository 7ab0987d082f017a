"""Mon compte › Cartes et abonnements (`/compte/cartes/`) with Django's test client: the
list, the link form and every failure path, refresh and remove; the SIP2 simulator answers
on a real socket."""

from __future__ import annotations

import html
import socket
import time
from typing import Any

import pytest
from django.test import override_settings
from django.utils import translation

from connectors.models import OutboxMessage, PartnerLink
from tests.connectors.conftest import BLOCKED_CARD, EXPIRED_CARD, UNKNOWN_CARD, VALID_CARD, library_config

pytestmark = pytest.mark.django_db

PAGE = "/compte/cartes/"


def _prefix(connector: Any) -> str:
    return f"c{connector.pk.hex[:8]}"


def _link(client: Any, connector: Any, card: str, pin: str, **extra: Any) -> Any:
    prefix = _prefix(connector)
    return client.post(
        f"/compte/cartes/{connector.pk}/lier/", {f"{prefix}-card_number": card, f"{prefix}-pin": pin}, **extra
    )


def _text(response: Any) -> str:
    return " ".join(html.unescape(response.content.decode()).split())


def test_the_page_needs_a_sign_in(client, library):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/connexion/")


def test_the_page_offers_a_form_per_enabled_connector(signed_in, library):
    response = signed_in.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    prefix = _prefix(library)
    assert "Bibliothèques de Nantes Métropole" in html
    assert f'name="{prefix}-pin"' in html
    assert 'type="password"' in html and 'autocomplete="off"' in html and 'inputmode="numeric"' in html
    assert "csrfmiddlewaretoken" in html
    assert "Cartes et abonnements" in html  # the account navigation names the section


def test_the_section_is_on_the_account_summary(signed_in, library):
    response = signed_in.get("/compte/")
    assert "/compte/cartes/" in response.content.decode()
    assert "Aucune carte liée" in _text(response)


def test_linking_a_valid_card(signed_in, resident, library):
    response = _link(signed_in, library, VALID_CARD[0], VALID_CARD[1], follow=True)
    assert response.redirect_chain[-1] == (PAGE, 302)
    text = _text(response)
    assert "Votre carte est liée et valide." in text
    assert "numéro se terminant par •••• 0001" in text
    assert VALID_CARD[0] not in text
    assert "Actualiser l'état" in text and "Retirer cette carte" in text
    assert PartnerLink.objects.get().user == resident


@pytest.mark.parametrize(
    ("card", "status", "message"),
    [
        ((VALID_CARD[0], "9999"), 400, "Le code PIN ne correspond pas à cette carte."),
        (UNKNOWN_CARD, 400, "Ce numéro de carte n'est pas connu du réseau des bibliothèques."),
        (("2900|01", "1234"), 400, "Ce numéro de carte ne peut pas être le vôtre"),
        (("", ""), 400, "Ce champ est obligatoire."),
    ],
)
def test_refusals_show_their_own_message_and_store_nothing(signed_in, library, card, status, message):
    response = _link(signed_in, library, card[0], card[1])
    assert response.status_code == status
    assert message in _text(response)
    assert 'class="error-summary"' in response.content.decode()
    assert not PartnerLink.objects.exists()


@pytest.mark.parametrize(
    ("card", "message"),
    [
        (BLOCKED_CARD, "Votre carte est liée, mais la bibliothèque l'indique bloquée"),
        (EXPIRED_CARD, "Votre carte est liée, mais elle a expiré."),
    ],
)
def test_blocked_and_expired_cards_are_linked_with_a_warning(signed_in, library, card, message):
    response = _link(signed_in, library, card[0], card[1], follow=True)
    assert message in _text(response)
    assert PartnerLink.objects.get().status in {"blocked", "expired"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_library_down(signed_in, library, library_sim):
    library.config = library_config(library_sim, port=_closed_port())
    library.save()
    response = _link(signed_in, library, *VALID_CARD)
    assert response.status_code == 503
    assert "Le système des bibliothèques ne répond pas pour le moment. Rien n'a été enregistré" in _text(
        response
    )
    assert not PartnerLink.objects.exists()


def test_a_slow_library_does_not_hold_the_page(signed_in, library, library_sim):
    library_sim.faults.delay = 3.0
    started = time.monotonic()
    response = _link(signed_in, library, *VALID_CARD)
    assert time.monotonic() - started < 2.5  # the read timeout (1 s here) bounds the wait
    assert response.status_code == 503
    assert "ne répond pas" in _text(response)
    assert not PartnerLink.objects.exists()


def test_garbage_from_the_library(signed_in, library, library_sim):
    library_sim.faults.garbage = 5
    response = _link(signed_in, library, *VALID_CARD)
    assert response.status_code == 503
    assert "a répondu de façon inattendue" in _text(response)


def test_a_card_linked_to_another_account(signed_in, make_resident, library, client):
    assert _link(signed_in, library, *VALID_CARD).status_code == 302
    signed_in.post("/deconnexion/")
    other = make_resident()
    client.force_login(other)
    response = _link(client, library, *VALID_CARD)
    assert response.status_code == 409
    text = _text(response)
    assert "Cette carte est déjà liée à un autre compte." in text
    assert "camille@example.org" not in text


@override_settings(CONNECTOR_LINK_RATE_LIMIT={"per_reference": 1, "per_account": 10, "window_seconds": 900})
def test_too_many_attempts(signed_in, library):
    _link(signed_in, library, VALID_CARD[0], "9999")
    response = _link(signed_in, library, *VALID_CARD)
    assert response.status_code == 429
    assert "Trop de tentatives. Par sécurité, attendez" in _text(response)


def test_a_disabled_or_unknown_connector_is_not_found(signed_in, library):
    library.enabled = False
    library.save()
    assert _link(signed_in, library, *VALID_CARD).status_code == 404
    assert "Bibliothèques de Nantes Métropole" not in _text(signed_in.get(PAGE))


def test_refresh_and_its_failure(signed_in, library, library_sim):
    _link(signed_in, library, *VALID_CARD)
    link = PartnerLink.objects.get()
    response = signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True)
    assert "Statut actualisé. Votre carte est liée et valide." in _text(response)
    library_sim.faults.garbage = 5
    response = signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True)
    text = _text(response)
    assert "Le statut de la carte n'a pas pu être actualisé" in text
    assert "la dernière actualisation a échoué" in text


def test_remove(signed_in, library):
    _link(signed_in, library, *VALID_CARD)
    link = PartnerLink.objects.get()
    assert signed_in.get(f"/compte/cartes/{link.pk}/retirer/").status_code == 405
    response = signed_in.post(f"/compte/cartes/{link.pk}/retirer/", follow=True)
    assert "La carte n'est plus liée à votre compte." in _text(response)
    assert not PartnerLink.objects.exists()
    assert OutboxMessage.objects.filter(kind="connectors.deprovision").count() == 1
    response = signed_in.post(f"/compte/cartes/{link.pk}/retirer/", follow=True)
    assert "Cette carte n'est plus liée à votre compte." in _text(response)


def test_another_residents_link_cannot_be_touched(signed_in, make_resident, library, client):
    _link(signed_in, library, *VALID_CARD)
    link = PartnerLink.objects.get()
    client.force_login(make_resident())
    client.post(f"/compte/cartes/{link.pk}/retirer/")
    client.post(f"/compte/cartes/{link.pk}/actualiser/")
    assert PartnerLink.objects.filter(pk=link.pk).exists()


def test_the_page_in_english(signed_in, library):
    signed_in.cookies["language"] = "en"
    with translation.override("en"):
        response = _link(signed_in, library, VALID_CARD[0], "9999", HTTP_ACCEPT_LANGUAGE="en")
    text = _text(response)
    assert "The PIN does not match this card." in text
    assert "Cards and memberships" in text


@override_settings(CONNECTOR_LINK_RATE_LIMIT={"per_reference": 5, "per_account": 1, "window_seconds": 900})
def test_too_many_refreshes(signed_in, library, library_sim):
    _link(signed_in, library, *VALID_CARD)
    link = PartnerLink.objects.get()
    signed_in.post(f"/compte/cartes/{link.pk}/actualiser/")
    asked = library_sim.counts["63"]
    response = signed_in.post(f"/compte/cartes/{link.pk}/actualiser/", follow=True)
    assert "Trop de tentatives. Par sécurité, attendez" in _text(response)
    assert library_sim.counts["63"] == asked
