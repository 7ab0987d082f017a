"""Transactional outbox: written with the change, delivered at least once by a real worker."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors.models import OutboxMessage
from connectors.outbox import backoff_delay
from connectors.services import OutboxError, outbox_enqueue, outbox_replay
from tests.connectors.conftest import PartnerServer
from tests.connectors.form_handler import HTTP_FORM_POST


def enqueue(url: str, key: str = "k1", **kwargs) -> OutboxMessage:
    with transaction.atomic():
        return outbox_enqueue(
            kind=HTTP_FORM_POST,
            destination=url,
            payload={"fields": {"logout_token": "t-" + key}},
            idempotency_key=key,
            partner="client-1",
            **kwargs,
        )


@pytest.mark.django_db(transaction=True)
def test_enqueue_outside_a_transaction_is_refused():
    with pytest.raises(OutboxError):
        outbox_enqueue(
            kind=HTTP_FORM_POST, destination="http://127.0.0.1:9/", payload={}, idempotency_key="x"
        )
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_unknown_kind_is_refused():
    with pytest.raises(OutboxError), transaction.atomic():
        outbox_enqueue(kind="nope", destination="http://127.0.0.1:9/", payload={}, idempotency_key="x")


@pytest.mark.django_db
def test_message_exists_only_if_the_change_committed():
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox_enqueue(
            kind=HTTP_FORM_POST, destination="http://127.0.0.1:9/", payload={}, idempotency_key="a"
        )
        raise RuntimeError("the change failed")
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_same_idempotency_key_is_one_message():
    first = enqueue("http://127.0.0.1:9/", key="same")
    second = enqueue("http://127.0.0.1:9/", key="same")
    assert first.pk == second.pk
    assert OutboxMessage.objects.count() == 1


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(4)
    base, cap = settings.OUTBOX_RETRY_BASE_SECONDS, settings.OUTBOX_RETRY_MAX_SECONDS
    assert (base, cap) == (5, 3600)  # the defaults of config/settings.py
    for attempts in range(1, 30):
        ceiling = min(cap, base * 2 ** (attempts - 1))
        delay = backoff_delay(attempts, rng=rng).total_seconds()
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(50, rng=rng).total_seconds() <= cap


def test_backoff_follows_the_retry_settings(settings):
    settings.OUTBOX_RETRY_BASE_SECONDS, settings.OUTBOX_RETRY_MAX_SECONDS = 1, 4
    rng = random.Random(7)
    assert [backoff_delay(n, rng=rng).total_seconds() <= min(4, 2 ** (n - 1)) for n in range(1, 8)] == [
        True
    ] * 7
    assert 0.5 <= backoff_delay(1, rng=rng).total_seconds() <= 1
    assert 2 <= backoff_delay(10, rng=rng).total_seconds() <= 4


@pytest.mark.django_db(transaction=True)
def test_partner_down_delays_but_never_loses_the_message(partner, run_worker):
    url, port = partner.url, partner.port
    partner.close()  # the partner is down: nothing listens on its port
    message = enqueue(url, key="down-then-up")

    run_worker("--once")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.PENDING
    assert message.attempts == 1
    assert message.next_attempt_at > timezone.now()
    assert message.last_error.startswith("unreachable")

    # The partner comes back on the same port; time passes until the retry is due.
    back = PartnerServer(port=port)
    try:
        assert back.url == url
        message.next_attempt_at = timezone.now() - timedelta(seconds=1)
        message.save(update_fields=["next_attempt_at"])
        run_worker("--once")
        message.refresh_from_db()
        assert message.status == OutboxMessage.Status.DELIVERED
        assert message.attempts == 2
        assert len(back.received) == 1
        assert back.received[0]["fields"] == {"logout_token": "t-down-then-up"}
        assert back.received[0]["headers"]["Idempotency-Key"] == "down-then-up"
    finally:
        back.close()


@pytest.mark.django_db(transaction=True)
def test_server_errors_are_retried_and_client_errors_dead_lettered(partner, run_worker):
    partner.status = 503
    retried = enqueue(partner.url, key="busy")
    run_worker("--once")
    retried.refresh_from_db()
    assert (retried.status, retried.attempts, retried.last_error) == ("pending", 1, "HTTP 503")

    partner.status = 400
    refused = enqueue(partner.url, key="refused")
    run_worker("--once")
    refused.refresh_from_db()
    assert (refused.status, refused.last_error) == ("dead", "HTTP 400")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed(partner, run_worker, status):
    """The partner URL was checked at registration; a 3xx would send the token elsewhere."""
    partner.status = status
    message = enqueue(partner.url, key=f"redirect-{status}")
    run_worker("--once")
    message.refresh_from_db()
    assert (message.status, message.last_error) == ("dead", f"HTTP {status}")
    assert [hit["path"] for hit in partner.received] == ["/backchannel"]


@pytest.mark.django_db(transaction=True)
def test_dead_letter_after_max_attempts_then_replay(partner, run_worker):
    partner.status = 500
    message = enqueue(partner.url, key="flaky", max_attempts=2)
    run_worker("--once")
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    run_worker("--once")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DEAD
    assert message.attempts == 2

    partner.status = 204
    outbox_replay(message_id=message.pk)
    run_worker("--once")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED
    with pytest.raises(OutboxError):
        outbox_replay(message_id=message.pk)


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_deliver_each_message_once(partner, run_worker):
    for i in range(30):
        enqueue(partner.url, key=f"m{i}")
    workers = [run_worker("--max-seconds", "8", "--interval", "0.2", wait=False) for _ in range(3)]
    for worker in workers:
        worker.wait(timeout=60)
    assert OutboxMessage.objects.filter(status="delivered").count() == 30
    keys = [request["headers"]["Idempotency-Key"] for request in partner.received]
    assert sorted(keys) == sorted(f"m{i}" for i in range(30))
