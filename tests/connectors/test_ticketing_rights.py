"""Rights with a ticketing connector, against the simulator on a real socket: the export asks
the platform by the resident's subject (the `sub` its client receives) and, when a Carte
Blanche is linked, by card; the erasure goes through the outbox (`rights.partner_erasure`)
with an idempotency key, once in effect however often it is delivered; faults: the platform
down (queued, delivered after recovery, none lost), slow (a timeout, retried), garbage (a
clear error, dead letter after the configured attempts, replayable), a worker process killed
with SIGKILL in the middle of a delivery (delivered again, one effect)."""

from __future__ import annotations

import signal
import time
from datetime import date

import pytest
from django.db import transaction

from connectors.links import link_create
from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from connectors.protocol import ErasureState, PartnerProtocolError, PartnerUnavailable
from connectors.rights_erasure import deliver_partner_erasure
from connectors.services import outbox_replay, partner_connector_configure
from connectors.subjects import partner_subject
from connectors.ticketing import TicketingConnector, link_secret
from connectors.ticketing_simulator import INVOICES_KEPT, sample_resident
from consent import erasure
from consent.models import RightsRequest
from tests.conftest import OIDCFlow
from tests.connectors.conftest import TICKETING_BIRTH, TICKETING_ELIGIBLE, ticketing_config
from tests.oidc.conftest import complete_flow

pytestmark = pytest.mark.django_db

SECRET = link_secret(birth_date=date.fromisoformat(TICKETING_BIRTH))
KIND = erasure.KIND_PARTNER_ERASURE


def _connector(sim) -> TicketingConnector:
    return TicketingConnector(
        config=ticketing_config(sim), secrets={"api_key": sim.api_key}, partner="billetterie"
    )


def _linked(resident, ticketing):
    return link_create(
        user=resident, partner_connector=ticketing, reference=TICKETING_ELIGIBLE, secret=SECRET
    )


def _message(client) -> OutboxMessage:
    return OutboxMessage.objects.get(kind=KIND, partner=client.client_id)


def _due_now(message: OutboxMessage) -> None:
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=message.created_at)


def test_the_export_asks_by_subject_and_by_card(resident, ticketing_client, ticketing_sim):
    subject = partner_subject(ticketing_client.client_id, resident)
    assert subject and subject != str(resident.pk)
    ticketing_sim.add_resident(subject, **sample_resident())
    data = _connector(ticketing_sim).export(TICKETING_ELIGIBLE, subject=subject)
    assert data["orders"][0]["id"] == "ORD-1001"
    assert data["tickets"][0]["price_category"] == "reduced"
    assert data["reduced_price_uses"][0]["scheme"] == "carte_blanche"
    eligibility = data["eligibility"]
    assert eligibility["status"] == "valid" and eligibility["scheme"] == "carte_blanche"
    assert eligibility["masked_card_number"] == "•••• 0001" and TICKETING_ELIGIBLE not in str(data)
    assert ticketing_sim.counts["/v1/residents/{subject}/data"] == 1


def test_the_export_of_a_resident_the_platform_does_not_know_is_empty(ticketing_sim):
    data = _connector(ticketing_sim).export(None, subject="someone-else")
    assert data == {"orders": [], "tickets": [], "reduced_price_uses": []}
    assert _connector(ticketing_sim).export(None) == {}


def test_the_export_fails_clearly_when_the_platform_fails(ticketing_sim):
    ticketing_sim.faults.mode = "garbage"
    with pytest.raises(PartnerProtocolError):
        _connector(ticketing_sim).export(None, subject="s")
    ticketing_sim.faults.mode = ""
    ticketing_sim.add_resident("s", orders="not a list")  # type: ignore[arg-type]
    with pytest.raises(PartnerProtocolError):
        _connector(ticketing_sim).export(None, subject="s")
    ticketing_sim.stop()
    with pytest.raises(PartnerUnavailable):
        _connector(ticketing_sim).export(None, subject="s")


def test_an_export_is_bounded_in_size(ticketing_sim):
    order = {"id": "ORD", "date": "2026-01-01", "note": "x" * 1000}
    ticketing_sim.add_resident("big", orders=[order] * 900)  # under 1 MiB: read in full
    assert len(_connector(ticketing_sim).export(None, subject="big")["orders"]) == 900
    ticketing_sim.add_resident("huge", orders=[order] * 1100)  # over 1 MiB: refused, not read on
    with pytest.raises(PartnerProtocolError, match="too large"):
        _connector(ticketing_sim).export(None, subject="huge")


def test_erasure_is_idempotent_per_key_and_says_what_is_kept(ticketing_sim):
    ticketing_sim.add_resident("s1", **sample_resident())
    connector = _connector(ticketing_sim)
    first = connector.erase(None, subject="s1", idempotency_key="k1")
    again = connector.erase(None, subject="s1", idempotency_key="k1")
    assert first == again and first.state == ErasureState.ERASED
    assert INVOICES_KEPT in first.detail
    assert ticketing_sim.effects["s1"] == 1 and ticketing_sim.resident("s1") is None
    assert connector.export(None, subject="s1")["orders"] == []
    assert connector.erase(None, idempotency_key="k2").state == ErasureState.NOT_SUPPORTED


def test_the_erasure_asks_the_platform_once_by_subject_and_card(
    resident, ticketing, ticketing_sim, ticketing_client
):
    _linked(resident, ticketing)
    subject = partner_subject(ticketing_client.client_id, resident)
    ticketing_sim.add_resident(subject, **sample_resident())
    request = erasure.erasure_now(user=resident, operator=None)
    message = _message(ticketing_client)
    assert message.payload["details"]["subject"] == subject
    assert TICKETING_ELIGIBLE not in str(message.payload)
    # A worker dies after the platform answered, before its transaction committed: delivered
    # again with the same idempotency key, the platform applies it once.
    with pytest.raises(RuntimeError), transaction.atomic():
        deliver_partner_erasure(message)
        raise RuntimeError("worker killed")
    relay_once(kinds=[KIND])
    assert ticketing_sim.counts["/v1/erasure-requests"] == 2
    assert ticketing_sim.effects[subject] == 1 and ticketing_sim.effects[TICKETING_ELIGIBLE] == 1
    assert TICKETING_ELIGIBLE not in ticketing_sim.state.cards
    answer = RightsRequest.objects.get(pk=request.pk).progress["partners"][ticketing_client.client_id]
    assert answer["state"] == "erased" and "invoices" in answer["detail"]
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED and "details" not in message.payload


def test_a_resident_who_only_signed_in_is_erased_by_subject(
    signed_in, resident, ticketing, ticketing_sim, ticketing_client
):
    complete_flow(OIDCFlow(signed_in, ticketing_client), scope="openid")
    subject = partner_subject(ticketing_client.client_id, resident)
    erasure.erasure_now(user=resident, operator=None)
    relay_once(kinds=[KIND])
    assert ticketing_sim.effects[subject] == 1
    assert _message(ticketing_client).status == OutboxMessage.Status.DELIVERED


def test_platform_down_the_erasure_waits_and_is_delivered_after_recovery(
    resident, ticketing, ticketing_sim, ticketing_client
):
    _linked(resident, ticketing)
    subject = partner_subject(ticketing_client.client_id, resident)
    request = erasure.erasure_now(user=resident, operator=None)
    ticketing_sim.stop()
    for attempt in (1, 2):
        relay_once(kinds=[KIND])
        message = _message(ticketing_client)
        assert message.status == OutboxMessage.Status.PENDING and message.attempts == attempt
        assert "details" in message.payload  # kept until the platform answers
        _due_now(message)
    ticketing_sim.start()
    relay_once(kinds=[KIND])
    assert ticketing_sim.effects[subject] == 1
    assert _message(ticketing_client).status == OutboxMessage.Status.DELIVERED
    answer = RightsRequest.objects.get(pk=request.pk).progress["partners"][ticketing_client.client_id]
    assert answer["state"] == "erased"


def test_a_slow_platform_times_out_and_the_erasure_is_retried(
    resident, ticketing, ticketing_sim, ticketing_client
):
    _linked(resident, ticketing)
    subject = partner_subject(ticketing_client.client_id, resident)
    erasure.erasure_now(user=resident, operator=None)
    ticketing_sim.faults.mode = "slow"
    relay_once(kinds=[KIND])
    message = _message(ticketing_client)
    assert message.status == OutboxMessage.Status.PENDING and message.last_error == "partner_timeout"
    ticketing_sim.faults.mode = ""
    _due_now(message)
    relay_once(kinds=[KIND])
    # The slow request may have been applied after we stopped waiting: the same key, one effect.
    assert ticketing_sim.effects[subject] == 1
    assert _message(ticketing_client).status == OutboxMessage.Status.DELIVERED


def test_failing_answers_dead_letter_after_the_configured_attempts_then_replay(
    resident, ticketing, ticketing_sim, ticketing_client
):
    _linked(resident, ticketing)
    subject = partner_subject(ticketing_client.client_id, resident)
    erasure.erasure_now(user=resident, operator=None)
    message = _message(ticketing_client)
    OutboxMessage.objects.filter(pk=message.pk).update(max_attempts=3)
    ticketing_sim.faults.mode = "error"  # HTTP 500 problems: retried
    for _attempt in range(3):
        relay_once(kinds=[KIND])
        message = _message(ticketing_client)
        _due_now(message)
    assert message.status == OutboxMessage.Status.DEAD and message.attempts == 3
    assert "details" in message.payload  # replayable
    ticketing_sim.faults.mode = ""
    outbox_replay(message_id=message.pk)
    _due_now(_message(ticketing_client))
    relay_once(kinds=[KIND])
    assert ticketing_sim.effects[subject] == 1
    assert _message(ticketing_client).status == OutboxMessage.Status.DELIVERED


def test_garbage_is_a_clear_error_retried_then_dead_lettered(
    resident, ticketing, ticketing_sim, ticketing_client
):
    """A maintenance page is often a passing state: retried with backoff like an unavailable
    platform, dead-lettered after the message's max_attempts (connectors.rights_erasure)."""
    _linked(resident, ticketing)
    erasure.erasure_now(user=resident, operator=None)
    ticketing_sim.faults.mode = "garbage"
    relay_once(kinds=[KIND])
    message = _message(ticketing_client)
    assert message.status == OutboxMessage.Status.PENDING and message.last_error == "partner_protocol_error"
    OutboxMessage.objects.filter(pk=message.pk).update(max_attempts=2, next_attempt_at=message.created_at)
    relay_once(kinds=[KIND])
    message = _message(ticketing_client)
    assert message.status == OutboxMessage.Status.DEAD and message.last_error == "partner_protocol_error"
    assert "details" in message.payload


def test_a_refusal_is_recorded_with_its_reason(resident, ticketing, ticketing_sim, ticketing_client):
    _linked(resident, ticketing)
    subject = partner_subject(ticketing_client.client_id, resident)
    ticketing_sim.faults.erasure_refusal = "an unpaid order is being recovered (Code civil, art. 2224)"
    request = erasure.erasure_now(user=resident, operator=None)
    relay_once(kinds=[KIND])
    answer = RightsRequest.objects.get(pk=request.pk).progress["partners"][ticketing_client.client_id]
    assert answer["state"] == "refused" and "unpaid order" in answer["detail"]
    assert ticketing_sim.effects[subject] == 0


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_delivery_delivers_again_with_one_effect(
    resident, ticketing, ticketing_sim, ticketing_client, run_worker
):
    """The real `outbox_worker` process asks the platform, which applies the erasure and is slow
    to answer; the worker is killed with SIGKILL meanwhile. Once its lease ends, another worker
    delivers the message again with the same key: the platform counts one effect."""
    partner_connector_configure(
        client=ticketing_client.client,
        kind="ticketing",
        label=ticketing.label,
        config=ticketing_config(ticketing_sim, read_timeout=5.0),
        secrets={"api_key": ticketing_sim.api_key},
    )
    _linked(resident, ticketing)
    subject = partner_subject(ticketing_client.client_id, resident)
    erasure.erasure_now(user=resident, operator=None)
    ticketing_sim.faults.mode, ticketing_sim.faults.delay = "slow_answer", 10.0
    worker = run_worker("--once", wait=False)
    try:
        deadline = time.monotonic() + 60
        while not ticketing_sim.effects[subject] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ticketing_sim.effects[subject] == 1  # applied, the answer not yet sent
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    message = _message(ticketing_client)
    assert message.status == OutboxMessage.Status.PENDING and message.locked_until is not None
    ticketing_sim.faults.mode = ""
    OutboxMessage.objects.filter(pk=message.pk).update(locked_until=None)  # the lease ran out
    run_worker("--once")
    message = _message(ticketing_client)
    assert message.status == OutboxMessage.Status.DELIVERED
    assert ticketing_sim.counts["/v1/erasure-requests"] == 2
    assert ticketing_sim.effects[subject] == 1 and ticketing_sim.effects[TICKETING_ELIGIBLE] == 1
