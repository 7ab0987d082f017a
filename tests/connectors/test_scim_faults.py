"""The SCIM connector when the partner misbehaves (scim2-server on a real socket, faults on
demand): down (queued, delivered after recovery, none lost), slow (timeouts), garbage (a clear
error, dead letter after the configured attempts, replayable), our token refused; and the
connector's configuration checks and health."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from connectors import monitoring
from connectors.models import OutboxMessage, ScimAccount
from connectors.outbox import relay_once
from connectors.protocol import PartnerProtocolError, PartnerUnavailable
from connectors.registry import connector_class
from connectors.scim import ScimConnector
from connectors.scim_provisioning import KIND_SYNC, sharing_changed
from connectors.services import (
    ConnectorSettingsError,
    outbox_enqueue,
    outbox_replay,
    partner_connector_configure,
)
from consent.services import consent_record
from identity.oidc.sharing import sharing_purpose_code
from tests.connectors.conftest import scim_config

pytestmark = pytest.mark.django_db


def _consented(resident, scim_client, scopes=("openid", "profile", "email")):
    """The resident's consent recorded as the consent screen does (its hook queues the sync)."""
    with transaction.atomic():
        consent_record(
            user=resident,
            purpose_code=sharing_purpose_code(scim_client.client, list(scopes)),
            event_type="given",
            collection_method="oidc_consent",
        )
        sharing_changed(user=resident, client_id=scim_client.client_id, reason="granted", key="test")


def _due_now() -> None:
    OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).update(next_attempt_at=timezone.now())


def _sync():
    return relay_once(kinds=[KIND_SYNC])


def test_partner_down_the_message_waits_and_is_delivered_after_recovery(
    resident, scim, scim_sim, scim_client
):
    _consented(resident, scim_client)
    scim_sim.go_down()
    result = _sync()
    assert result.retried == 1
    message = OutboxMessage.objects.get(kind=KIND_SYNC)
    assert message.status == OutboxMessage.Status.PENDING and message.attempts == 1
    assert message.last_error.startswith("partner_unavailable")
    assert message.next_attempt_at > timezone.now()  # backoff
    scim_sim.recover()
    _due_now()
    assert _sync().delivered == 1
    (user,) = scim_sim.users()
    assert user["name"]["givenName"] == "Camille"


def test_partner_slow_the_delivery_times_out_and_is_retried(resident, scim, scim_sim, scim_client):
    partner_connector_configure(
        client=scim_client.client,
        kind="scim",
        label=scim.label,
        config=scim_config(scim_sim, read_timeout=0.3),
    )
    _consented(resident, scim_client)
    scim_sim.faults.mode, scim_sim.faults.delay = "slow", 2.0
    started = time.monotonic()
    assert _sync().retried == 1
    assert time.monotonic() - started < 1.5  # the timeout, not the partner, decided
    message = OutboxMessage.objects.get(kind=KIND_SYNC)
    assert message.last_error.startswith("partner_timeout")
    scim_sim.faults.mode = ""
    _due_now()
    assert _sync().delivered == 1
    assert len(scim_sim.users()) == 1


def test_garbage_answers_dead_letter_after_the_configured_attempts(resident, scim, scim_sim, scim_client):
    _consented(resident, scim_client)
    scim_sim.faults.mode = "garbage"
    for _attempt in range(2):
        assert _sync().retried == 1
        _due_now()
    assert _sync().dead == 1  # max_attempts 3 (the connector's setting)
    message = OutboxMessage.objects.get(kind=KIND_SYNC)
    assert message.status == OutboxMessage.Status.DEAD and message.attempts == 3
    assert message.last_error.startswith("partner_protocol_error: not a SCIM answer")
    # The operator replays it once the partner is fixed: delivered, one user.
    scim_sim.faults.mode = ""
    outbox_replay(message_id=message.pk)
    assert _sync().delivered == 1
    assert len(scim_sim.users()) == 1


def test_a_partner_in_maintenance_is_retried(resident, scim, scim_sim, scim_client):
    _consented(resident, scim_client)
    scim_sim.faults.mode = "error"
    assert _sync().retried == 1
    assert OutboxMessage.objects.get(kind=KIND_SYNC).last_error.startswith("partner_unavailable: HTTP 503")


def test_our_token_refused_is_retried_with_a_clear_reason(resident, scim, scim_sim, scim_client):
    partner_connector_configure(
        client=scim_client.client,
        kind="scim",
        label=scim.label,
        config=scim_config(scim_sim),
        secrets={"bearer_token": "not-the-token"},
    )
    _consented(resident, scim_client)
    assert _sync().retried == 1
    assert OutboxMessage.objects.get(kind=KIND_SYNC).last_error.startswith("partner_login_refused")
    assert scim_sim.users() == []


def test_a_disabled_connector_dead_letters_for_a_replay(resident, scim, scim_sim, scim_client):
    _consented(resident, scim_client)
    scim.enabled = False
    scim.save(update_fields=["enabled"])
    assert _sync().dead == 1
    assert "disabled" in OutboxMessage.objects.get(kind=KIND_SYNC).last_error


def test_the_connector_errors_directly(scim, scim_sim):
    connector = ScimConnector(
        config=scim_config(scim_sim, read_timeout=0.3), secrets={"bearer_token": scim_sim.token}, partner="p"
    )
    scim_sim.faults.mode = "garbage"
    with pytest.raises(PartnerProtocolError):
        connector.sync("sub-x", {"given_name": "A"})
    scim_sim.faults.mode, scim_sim.faults.delay = "slow", 1.0
    with pytest.raises(PartnerUnavailable) as timeout:
        connector.sync("sub-x", {"given_name": "A"})
    assert timeout.value.code == "partner_timeout"
    scim_sim.faults.mode = ""
    scim_sim.go_down()
    with pytest.raises(PartnerUnavailable):
        connector.export(None, subject="sub-x")


def test_health(scim, scim_sim):
    connector = ScimConnector(
        config=scim_config(scim_sim), secrets={"bearer_token": scim_sim.token}, partner="p"
    )
    assert connector.health().ok
    scim_sim.go_down()
    health = connector.health()
    assert not health.ok and health.detail == "partner_unavailable"


@pytest.mark.parametrize(
    ("config", "secrets", "problem"),
    [
        ({"base_url": "http://partner.example.org/scim/v2"}, {"bearer_token": "t"}, "https"),
        ({"base_url": "ftp://127.0.0.1/scim"}, {"bearer_token": "t"}, "https URL"),
        ({"base_url": "https://partner.example.org/scim/v2"}, {}, "bearer_token"),
        (
            {"base_url": "https://partner.example.org/scim/v2", "max_attempts": 0},
            {"bearer_token": "t"},
            "max_attempts",
        ),
        (
            {"base_url": "https://partner.example.org/scim/v2", "read_timeout": "x"},
            {"bearer_token": "t"},
            "read_timeout",
        ),
        (
            {"base_url": "https://partner.example.org/scim/v2", "colour": 1},
            {"bearer_token": "t"},
            "unknown setting",
        ),
    ],
)
def test_configuration_checks(scim_client, config, secrets, problem):
    cls = connector_class("scim")
    assert cls is ScimConnector
    assert any(problem in text for text in cls.check_config(config, secrets))
    with pytest.raises(ConnectorSettingsError):
        partner_connector_configure(
            client=scim_client.client, kind="scim", label="x", config=config, secrets=secrets
        )


def test_a_good_configuration_is_accepted():
    config = {"base_url": "https://partner.example.org/scim/v2", "read_timeout": 2, "max_attempts": 5}
    assert ScimConnector.check_config(config, {"bearer_token": "t"}) == []
    assert ScimConnector.check_config({"base_url": "http://[::1]:8080/scim/v2"}, {"bearer_token": "t"}) == []


def test_backoff_leaves_the_message_waiting(resident, scim, scim_sim, scim_client):
    """A failed attempt is not retried at once: the next relay run leaves it alone."""
    _consented(resident, scim_client)
    scim_sim.go_down()
    _sync()
    assert _sync().processed == 0
    message = OutboxMessage.objects.get(kind=KIND_SYNC)
    assert message.next_attempt_at - timezone.now() < timedelta(seconds=10)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_delivery_delivers_again_once(resident, scim, scim_sim, scim_client, run_worker):
    """`manage.py outbox_worker` in its own process is killed (SIGKILL) after the partner
    created the user, before its answer arrived: the next worker delivers the message again
    and the partner still holds one user, created once."""
    partner_connector_configure(
        client=scim_client.client,
        kind="scim",
        label=scim.label,
        config=scim_config(scim_sim, read_timeout=10),
    )
    _consented(resident, scim_client)
    scim_sim.faults.mode, scim_sim.faults.delay = "slow_after", 8.0
    worker = run_worker("--interval", "0.2", "--max-seconds", "60", wait=False)
    try:
        deadline = time.monotonic() + 30
        while not scim_sim.users() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(scim_sim.users()) == 1
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=10)
    message = OutboxMessage.objects.get(kind=KIND_SYNC)
    assert message.status == OutboxMessage.Status.PENDING and message.locked_until is not None
    scim_sim.faults.mode = ""
    # Its lease runs out (connectors.outbox.LEASE_SECONDS), then another worker takes it.
    OutboxMessage.objects.filter(pk=message.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    run_worker("--once")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED
    assert len(scim_sim.users()) == 1 and scim_sim.counts["POST /Users"] == 1
    assert ScimAccount.objects.get(user=resident).scim_id == scim_sim.users()[0]["id"]


def test_operators_see_the_scim_partner_s_health_and_queue(resident, scim, scim_sim, scim_client):
    """The partners' page and `connectors_status --check`: the SCIM connector's health
    (ServiceProviderConfig) and its failing message, with the error's type only."""
    _consented(resident, scim_client)
    scim_sim.go_down()
    _sync()
    scim_sim.recover()
    out = StringIO()
    call_command("connectors_status", "--check", stdout=out)
    (line,) = [row for row in out.getvalue().splitlines() if row.startswith(scim_client.client_id)]
    assert "scim" in line
    rows = {row.partner: row for row in monitoring.partner_rows()}
    row = rows[scim_client.client_id]
    (entry,) = row.connectors
    assert entry.health is not None and entry.health.ok
    assert row.pending == 1 and row.failing == 1


def test_a_malformed_message_is_dead_lettered_with_a_clear_error(scim):
    with transaction.atomic():
        outbox_enqueue(
            kind=KIND_SYNC,
            destination="scim",
            payload={"connector": str(scim.pk), "user": "not-an-id", "reason": "granted"},
            idempotency_key="malformed",
        )
        outbox_enqueue(
            kind=KIND_SYNC,
            destination="scim",
            payload={"connector": "00000000-0000-0000-0000-000000000000", "user": "x"},
            idempotency_key="no-connector",
        )
    assert _sync().dead == 2
    errors = dict(OutboxMessage.objects.values_list("idempotency_key", "last_error"))
    assert errors == {
        "malformed": "the payload names no account",
        "no-connector": "the SCIM connector no longer exists",
    }
