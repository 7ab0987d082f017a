"""The resident's links in the export and the erasure; the partner's erasure request through
the library connector, recorded as what SIP2 can honestly do."""

from __future__ import annotations

import html

import pytest

from common.crypto import keyed_hash
from connectors.links import link_create
from connectors.models import OutboxMessage, PartnerLink
from connectors.outbox import relay_once
from consent import erasure
from consent.models import RightsRequest
from consent.rights import rights_erase, rights_export
from tests.connectors.conftest import VALID_CARD

pytestmark = pytest.mark.django_db


def test_the_export_holds_the_card_number_and_never_the_pin(resident, library, library_client):
    link = link_create(
        user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1]
    )
    export = rights_export(resident)
    section = export["sections"]["connectors"]
    (entry,) = section["links"]
    assert entry["id"] == str(link.pk)
    assert entry["reference"] == VALID_CARD[0]
    assert entry["partner"] == library_client.client_id and entry["status"] == "valid"
    # No value is the PIN and nothing is named after it (a substring check of the whole text
    # failed whenever a random id or timestamp happened to contain "1234").
    leaves = list(_leaves(export))
    assert leaves and VALID_CARD[1] not in {str(value) for _key, value in leaves}
    assert not [key for key, _value in leaves if key.casefold() in {"pin", "patron_pin", "secret"}]


def _leaves(value, key=""):
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _leaves(item, str(name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item, key)
    else:
        yield key, value


def test_the_erasure_deletes_the_links(resident, library):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    report = rights_erase(resident)
    assert not PartnerLink.objects.exists()
    connectors = next(item for item in report.reports if item.provider == "connectors")
    assert connectors.details["links"] == 1


def test_the_partner_with_a_library_connector_is_asked_and_its_answer_recorded(
    resident, library, library_client
):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = erasure.erasure_now(user=resident, operator=None)
    request = RightsRequest.objects.get(pk=request.pk)
    assert request.progress["partners"] == {library_client.client_id: {"state": "requested"}}
    message = OutboxMessage.objects.get(kind=erasure.KIND_PARTNER_ERASURE)
    assert message.partner == library_client.client_id
    assert VALID_CARD[0] not in str(message.payload)
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    request.refresh_from_db()
    assert request.progress["partners"][library_client.client_id]["state"] == "not_supported"
    assert not PartnerLink.objects.exists()


def test_the_status_page_says_the_library_cannot_be_asked(client, resident, library, library_client):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = erasure.erasure_now(user=resident, operator=None)
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    RightsRequest.objects.filter(pk=request.pk).update(token_hash=keyed_hash("status-secret"))
    page = html.unescape(client.get("/compte/suppression/etat/status-secret/").content.decode())
    assert library_client.client.name in page
    assert "son système ne peut pas recevoir de demande d'effacement de notre part" in page
