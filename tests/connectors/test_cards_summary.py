"""Mon compte's summary of Cartes et abonnements names what the resident can link: the label
each connector kind declares (Connector.resident_label), for the kinds of the enabled
connectors only, once per kind; kinds that link nothing (provisioning, email) are never named."""

from __future__ import annotations

import html
from typing import Any, ClassVar

import pytest
from django.utils import translation

from connectors import registry
from connectors.library import LibraryConnector
from connectors.links import link_create
from connectors.models import PartnerConnector
from connectors.views import cards_summary
from tests.connectors.conftest import VALID_CARD

pytestmark = pytest.mark.django_db

LIBRARY = "votre carte de bibliothèque"
LIBERTAN = "votre carte Libertan"


def _summary(client: Any) -> str:
    page = client.get("/compte/").content.decode()
    return " ".join(html.unescape(page).split())


def test_the_summary_names_the_library_card_when_only_libraries_link(signed_in, library):
    text = _summary(signed_in)
    assert f"Aucune carte liée. Vous pouvez lier {LIBRARY}." in text
    assert "Libertan" not in text
    assert "Lier mes cartes et abonnements, voir leur état" in text


def test_the_summary_names_every_kind_enabled(signed_in, library, transport):
    assert f"Vous pouvez lier {LIBRARY} ou {LIBERTAN}." in _summary(signed_in)


def test_a_disabled_connector_is_not_named(signed_in, library, transport):
    PartnerConnector.objects.filter(pk=library.pk).update(enabled=False)
    assert f"Aucune carte liée. Vous pouvez lier {LIBERTAN}." in _summary(signed_in)


def test_nothing_to_link_says_so(signed_in):
    assert "Aucune carte liée. Aucun service ne propose de lier une carte pour le moment." in _summary(
        signed_in
    )


def test_the_summary_counts_the_residents_links(resident, library):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    assert cards_summary(resident) == ["1 carte liée à votre compte."]


def test_the_summary_in_english(resident, library, transport):
    with translation.override("en"):
        assert cards_summary(resident) == [
            "No card linked. You can link your library card or your Libertan card."
        ]


class _Provisioning(LibraryConnector):
    """A kind residents link nothing with (as SCIM provisioning or the email connector)."""

    kind = "test-provisioning"
    resident_label: ClassVar[Any] = ""


class _LinksNoAccount(LibraryConnector):
    """A kind that links no account (as the email connector), whatever its label says."""

    kind = "test-no-account"
    resident_label: ClassVar[Any] = "adresse de contact"
    links_accounts: ClassVar[bool] = False


class _Ticketing(LibraryConnector):
    kind = "test-ticketing"
    resident_label: ClassVar[Any] = "Carte Blanche"


def test_kinds_that_link_nothing_are_never_named_and_each_kind_once(
    monkeypatch, resident, library, make_client
):
    monkeypatch.setitem(registry._kinds, _Provisioning.kind, _Provisioning)
    monkeypatch.setitem(registry._kinds, _Ticketing.kind, _Ticketing)
    monkeypatch.setitem(registry._kinds, _LinksNoAccount.kind, _LinksNoAccount)
    for kind in (_Provisioning.kind, _LinksNoAccount.kind, _Ticketing.kind, "library"):
        PartnerConnector.objects.create(client=make_client().client, kind=kind, label=kind)
    assert registry.resident_labels()[_Ticketing.kind] == "Carte Blanche"
    assert _Provisioning.kind not in registry.resident_labels()
    assert _LinksNoAccount.kind not in registry.resident_labels()
    assert cards_summary(resident) == [
        f"Aucune carte liée. Vous pouvez lier {LIBRARY} ou votre Carte Blanche."
    ]
