"""Faults between the outbox and a partner, with real processes and real sockets (issue 13,
"Tests and faults"): `manage.py outbox_worker` runs as a separate OS process against the test
database (tests/connectors/conftest.py `run_worker`) and asks the Naolib simulator, which
answers over HTTP on 127.0.0.1 and counts requests and effects.

- partner down: the erasure requests wait with backoff, attempts counted, and are delivered
  once each after recovery, none lost;
- partner slow: the worker's call times out and is retried; the partner's late effect is not
  doubled by the retry (same idempotency key);
- garbage answers: a clear error type, retried, dead-lettered after the message's configured
  attempts, visible to operators, delivered by `outbox_replay` once the partner is fixed;
- a worker SIGKILLed while the partner holds its answer: once the lease expires another
  worker delivers the message again with the same Idempotency-Key and the partner applies
  it once.

The resident's side of a slow or down partner (the page answers within its bound, nothing
stored): tests/connectors/test_cards_page.py and test_transport_page.py.
"""

from __future__ import annotations

import signal
import time
from datetime import date, timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from connectors import monitoring
from connectors.links import link_create, link_remove
from connectors.models import OutboxMessage, PartnerConnector
from connectors.services import partner_connector_configure
from connectors.transport import link_secret
from connectors.transport_simulator import TransportSimulator
from consent import erasure
from consent.models import RightsRequest
from tests.connectors.conftest import (
    TRANSPORT_BIRTH,
    TRANSPORT_EXPIRED,
    TRANSPORT_NAME,
    TRANSPORT_VALID,
    transport_config,
)

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = link_secret(family_name=TRANSPORT_NAME, birth_date=date.fromisoformat(TRANSPORT_BIRTH))
ERASURES = "/v1/erasure-requests"
PARTNERS_PAGE = "/admin/connectors/outboxmessage/partenaires/"


def _link(user: Any, connector: PartnerConnector, card: str) -> Any:
    return link_create(user=user, partner_connector=connector, reference=card, secret=SECRET)


def _erasure_message(client_id: str, request: RightsRequest) -> OutboxMessage:
    return OutboxMessage.objects.get(
        kind=erasure.KIND_PARTNER_ERASURE, partner=client_id, payload__request_id=str(request.pk)
    )


def _linked_then_erased(
    resident: Any, connector: PartnerConnector, client_id: str
) -> tuple[RightsRequest, OutboxMessage]:
    """The resident links their valid card, then an operator erases the account: the erasure
    request to Naolib waits in the outbox."""
    _link(resident, connector, TRANSPORT_VALID)
    request = erasure.erasure_now(user=resident, operator=None)
    return request, _erasure_message(client_id, request)


def _due_now(*messages: OutboxMessage) -> None:
    """Time passes: the backoff (or a dead worker's lease) is over."""
    past = timezone.now() - timedelta(seconds=1)
    due = OutboxMessage.objects.filter(pk__in=[m.pk for m in messages])
    due.update(next_attempt_at=past, locked_until=None)


def _answer(request: RightsRequest, client_id: str) -> dict[str, Any]:
    progress = RightsRequest.objects.get(pk=request.pk).progress
    return dict(progress["partners"][client_id])


def test_naolib_down_the_requests_wait_and_each_is_delivered_once_after_recovery(
    make_resident, transport, transport_sim, transport_client, run_worker
):
    client_id = transport_client.client_id
    first, second = make_resident(), make_resident()
    _link(first, transport, TRANSPORT_VALID)
    link = _link(second, transport, TRANSPORT_EXPIRED)
    # The second resident unlinks, links again: a deprovision message, which asks Naolib
    # nothing (the contract has no such call: docs/connectors/transport.md).
    deprovision = link_remove(user=second, link_id=link.pk)
    _link(second, transport, TRANSPORT_EXPIRED)

    transport_sim.stop()  # Naolib is down: nothing listens on its port
    requests = [erasure.erasure_now(user=user, operator=None) for user in (first, second)]
    messages = [_erasure_message(client_id, request) for request in requests]

    started = timezone.now()
    run_worker("--once")
    for message in messages:
        message.refresh_from_db()
        assert (message.status, message.attempts, message.last_error) == ("pending", 1, "partner_unavailable")
        # Backoff: the next attempt at least half the base delay after this one (jittered).
        assert message.next_attempt_at >= started + timedelta(seconds=settings.OUTBOX_RETRY_BASE_SECONDS / 2)
        assert "details" in message.payload  # the sealed card number is kept until Naolib answers
    deprovision.refresh_from_db()
    assert deprovision.status == OutboxMessage.Status.DELIVERED
    (row,) = [row for row in monitoring.partner_rows() if row.partner == client_id]
    assert (row.pending, row.failing, row.error_types) == (2, 2, {"partner_unavailable": 2})

    transport_sim.start()  # Naolib is back on the same port
    _due_now(*messages)
    run_worker("--once")
    for message in messages:
        message.refresh_from_db()
        assert (message.status, message.attempts) == ("delivered", 2)
        assert "details" not in message.payload
    assert transport_sim.counts[ERASURES] == 2
    assert dict(transport_sim.effects) == {TRANSPORT_VALID: 1, TRANSPORT_EXPIRED: 1}
    assert [_answer(request, client_id)["state"] for request in requests] == ["erased", "erased"]
    none_lost = OutboxMessage.objects.filter(partner=client_id).exclude(status="delivered")
    assert not none_lost.exists()


def test_naolib_slow_the_call_times_out_and_the_retry_does_not_erase_twice(
    resident, transport, transport_sim, transport_client, run_worker
):
    client_id = transport_client.client_id
    request, message = _linked_then_erased(resident, transport, client_id)
    transport_sim.faults.delay = 2.5  # longer than the connector's read timeout (1 s)
    transport_sim.faults.mode = "slow"

    run_worker("--once")
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == ("pending", 1, "partner_timeout")

    # Naolib applied the request after we gave up waiting: the retry carries the same key.
    deadline = time.monotonic() + 5
    while not transport_sim.effects[TRANSPORT_VALID] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert transport_sim.effects[TRANSPORT_VALID] == 1
    transport_sim.faults.mode = ""
    _due_now(message)
    run_worker("--once")
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("delivered", 2)
    assert transport_sim.counts[ERASURES] == 2
    assert transport_sim.effects[TRANSPORT_VALID] == 1
    assert _answer(request, client_id)["state"] == "erased"


def test_garbage_dead_letters_after_the_configured_attempts_then_replay_delivers(
    resident, transport, transport_sim, transport_client, run_worker, admin_client
):
    client_id = transport_client.client_id
    request, message = _linked_then_erased(resident, transport, client_id)
    OutboxMessage.objects.filter(pk=message.pk).update(max_attempts=3)  # the configured attempts
    transport_sim.faults.mode = "garbage"  # Naolib answers a maintenance page

    for attempt in (1, 2):
        run_worker("--once")
        message.refresh_from_db()
        assert (message.status, message.attempts) == ("pending", attempt)
        assert message.last_error == "partner_protocol_error"
        _due_now(message)
    page = admin_client.get(PARTNERS_PAGE).content.decode()
    assert client_id in page and "partner_protocol_error" in page

    run_worker("--once")
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == ("dead", 3, "partner_protocol_error")
    assert transport_sim.counts[ERASURES] == 3 and transport_sim.effects[TRANSPORT_VALID] == 0
    (row,) = [row for row in monitoring.partner_rows() if row.partner == client_id]
    assert (row.pending, row.dead) == (0, 1)
    dead_letters = admin_client.get(
        "/admin/connectors/outboxmessage/", {"status__exact": "dead", "partner__exact": client_id}
    )
    assert "partner_protocol_error" in dead_letters.content.decode()

    run_worker("--once")  # nothing retries a dead letter
    assert transport_sim.counts[ERASURES] == 3

    transport_sim.faults.mode = ""  # Naolib is fixed
    out = StringIO()
    call_command("outbox_replay", "--partner", client_id, "--dead-only", stdout=out)
    assert "1 message(s)" in out.getvalue()
    run_worker("--once")
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("delivered", 1)
    assert transport_sim.counts[ERASURES] == 4 and transport_sim.effects[TRANSPORT_VALID] == 1
    assert _answer(request, client_id)["state"] == "erased"


@pytest.fixture
def patient_transport(transport_sim: TransportSimulator, transport_client: Any) -> PartnerConnector:
    """The transport connector with the longest read timeout (5 s): the test has the time to
    kill the worker while it waits for Naolib's held answer."""
    return partner_connector_configure(
        client=transport_client.client,
        kind="transport",
        label="Naolib — carte Libertan",
        config=transport_config(transport_sim, read_timeout=5.0),
        secrets={"api_key": transport_sim.api_key},
    )


def test_a_worker_killed_mid_delivery_is_replaced_and_naolib_erases_once(
    resident, patient_transport, transport_sim, transport_client, run_worker
):
    client_id = transport_client.client_id
    request, message = _linked_then_erased(resident, patient_transport, client_id)

    transport_sim.hold_erasures()  # Naolib applies the request, then holds its answer
    try:
        worker = run_worker("--interval", "0.2", "--max-seconds", "60", wait=False)
        assert transport_sim.wait_held(timeout=60), "the worker never asked Naolib"
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        transport_sim.release_held()
    assert transport_sim.effects[TRANSPORT_VALID] == 1

    message.refresh_from_db()
    # The dead worker recorded nothing: its lease still holds the message.
    assert (message.status, message.attempts) == ("pending", 0)
    assert message.locked_until is not None and message.locked_until > timezone.now()
    run_worker("--once")  # another worker leaves a leased message alone
    assert transport_sim.counts[ERASURES] == 1

    OutboxMessage.objects.filter(pk=message.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    run_worker("--once")  # the lease expired: delivered again
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("delivered", 1)
    assert transport_sim.counts[ERASURES] == 2
    assert list(transport_sim.state.answers) == [f"{message.idempotency_key}:transport"]  # one key, twice
    assert transport_sim.effects[TRANSPORT_VALID] == 1  # one effect
    assert _answer(request, client_id)["state"] == "erased"
    assert not OutboxMessage.objects.filter(partner=client_id).exclude(status="delivered").exists()
