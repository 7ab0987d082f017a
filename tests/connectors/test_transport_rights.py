"""Rights with a transport connector: the export holds the link and, asked through the
connector, Naolib's contract data; the erasure asks Naolib through `rights.partner_erasure`
with an idempotency key, once in effect however often the outbox delivers, and records the
answer. The simulator answers on a real socket."""

from __future__ import annotations

import html
from datetime import date

import pytest
from django.db import transaction

from common.crypto import keyed_hash
from connectors.links import link_create
from connectors.models import OutboxMessage, PartnerLink
from connectors.outbox import relay_once
from connectors.rights_erasure import deliver_partner_erasure
from connectors.transport import link_secret
from consent import erasure, rights_requests
from consent.models import RightsPartnerData, RightsRequest
from consent.rights import rights_export
from tests.connectors.conftest import TRANSPORT_BIRTH, TRANSPORT_NAME, TRANSPORT_VALID

pytestmark = pytest.mark.django_db

SECRET = link_secret(family_name=TRANSPORT_NAME, birth_date=date.fromisoformat(TRANSPORT_BIRTH))


def _linked(resident, transport):
    return link_create(user=resident, partner_connector=transport, reference=TRANSPORT_VALID, secret=SECRET)


def test_the_export_holds_the_card_and_naolib_s_contract_never_the_birth_date(
    resident, transport, transport_sim, transport_client
):
    link = _linked(resident, transport)
    calls = dict(transport_sim.counts)
    export = rights_export(resident)
    (entry,) = export["sections"]["connectors"]["links"]
    assert entry["id"] == str(link.pk) and entry["reference"] == TRANSPORT_VALID
    assert entry["attributes"]["contract_type"] == "annual"
    assert "partner_data" not in entry  # the section never calls the partner: the outbox does
    assert dict(transport_sim.counts) == calls
    # Naolib's own data comes through the export's partner message.
    request = rights_requests.export_request(user=resident).request
    relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT])
    answer = RightsRequest.objects.get(pk=request.pk).progress["partners"][transport_client.client_id]
    assert answer["state"] == "answered"
    (row,) = RightsPartnerData.objects.filter(request=request)
    assert row.source == "transport" and TRANSPORT_VALID.encode() not in bytes(row.data)  # encrypted
    assert TRANSPORT_BIRTH not in str(export) and "1990" not in str(entry)


def test_the_export_is_not_held_back_when_naolib_is_down(resident, transport, transport_sim):
    _linked(resident, transport)
    transport_sim.stop()
    (entry,) = rights_export(resident)["sections"]["connectors"]["links"]
    assert entry["reference"] == TRANSPORT_VALID and entry["status"] == "valid"


def test_the_erasure_asks_naolib_once_and_records_its_answer(
    resident, transport, transport_sim, transport_client
):
    _linked(resident, transport)
    request = erasure.erasure_now(user=resident, operator=None)
    assert not PartnerLink.objects.exists()
    message = OutboxMessage.objects.get(kind=erasure.KIND_PARTNER_ERASURE, partner=transport_client.client_id)
    assert TRANSPORT_VALID not in str(message.payload)  # sealed, bound to the erased link's id
    # A worker dies after Naolib answered, before its transaction committed: the message is
    # delivered again with the same idempotency key, and Naolib applies it once.
    with pytest.raises(RuntimeError), transaction.atomic():
        deliver_partner_erasure(message)
        raise RuntimeError("worker killed")
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    assert transport_sim.counts["/v1/erasure-requests"] == 2
    assert transport_sim.effects[TRANSPORT_VALID] == 1
    # Once answered, a replay of the message asks nothing more and records nothing new.
    message.refresh_from_db()
    deliver_partner_erasure(message)
    assert transport_sim.counts["/v1/erasure-requests"] == 2
    request = RightsRequest.objects.get(pk=request.pk)
    answer = request.progress["partners"][transport_client.client_id]
    assert answer["state"] == "erased" and "confirmed" in answer["detail"]
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED and "details" not in message.payload


def test_naolib_down_the_erasure_waits_and_is_delivered_after_recovery(
    resident, transport, transport_sim, transport_client
):
    _linked(resident, transport)
    request = erasure.erasure_now(user=resident, operator=None)
    transport_sim.stop()
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    message = OutboxMessage.objects.get(kind=erasure.KIND_PARTNER_ERASURE, partner=transport_client.client_id)
    assert message.status == OutboxMessage.Status.PENDING and message.attempts == 1
    assert "details" in message.payload  # kept until Naolib answers
    transport_sim.start()
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=message.created_at)
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    assert transport_sim.effects[TRANSPORT_VALID] == 1
    request = RightsRequest.objects.get(pk=request.pk)
    assert request.progress["partners"][transport_client.client_id]["state"] == "erased"


def test_garbage_is_retried_then_dead_lettered_keeping_the_erasure_replayable(
    resident, transport, transport_sim, transport_client
):
    """A maintenance page is often a passing state: retried with backoff, dead-lettered after
    the message's max_attempts (the real worker's run: tests/connectors/test_faults.py)."""
    _linked(resident, transport)
    erasure.erasure_now(user=resident, operator=None)
    transport_sim.faults.mode = "garbage"
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    message = OutboxMessage.objects.get(kind=erasure.KIND_PARTNER_ERASURE, partner=transport_client.client_id)
    assert message.status == OutboxMessage.Status.PENDING and message.attempts == 1
    assert message.last_error == "partner_protocol_error"
    OutboxMessage.objects.filter(pk=message.pk).update(max_attempts=2, next_attempt_at=message.created_at)
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DEAD and message.last_error == "partner_protocol_error"
    assert "details" in message.payload
    assert transport_sim.effects[TRANSPORT_VALID] == 0


def test_a_refusal_is_recorded_and_shown(client, resident, transport, transport_sim, transport_client):
    _linked(resident, transport)
    transport_sim.faults.erasure_refusal = "fare evasion record kept 3 years (Code des transports)"
    request = erasure.erasure_now(user=resident, operator=None)
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    request = RightsRequest.objects.get(pk=request.pk)
    answer = request.progress["partners"][transport_client.client_id]
    assert answer["state"] == "refused" and "fare evasion" in answer["detail"]
    assert transport_sim.effects[TRANSPORT_VALID] == 0
    RightsRequest.objects.filter(pk=request.pk).update(token_hash=keyed_hash("status-secret"))
    page = html.unescape(client.get("/compte/suppression/etat/status-secret/").content.decode())
    assert "le service a refusé l'effacement" in page
