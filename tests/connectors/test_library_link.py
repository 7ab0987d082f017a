"""Linking a library card (connectors.links over connectors.library) against the SIP2
simulator on a real socket: every outcome, what is stored and what never is."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from connectors import links
from connectors.library import LibraryConnector, sip2_config
from connectors.links import (
    KIND_DEPROVISION,
    LinkError,
    LinkThrottled,
    link_create,
    link_refresh,
    link_remove,
)
from connectors.models import OutboxMessage, PartnerLink
from connectors.outbox import relay_once
from connectors.protocol import (
    ConnectorConfigError,
    CredentialsRefused,
    ErasureState,
    InvalidReference,
    PartnerProtocolError,
    PartnerUnavailable,
    RefusalReason,
)
from connectors.sealing import open_reference, reference_hash
from connectors.services import ConnectorSettingsError, partner_connector_configure
from identity.models import AuditEvent
from tests.connectors.conftest import BLOCKED_CARD, EXPIRED_CARD, UNKNOWN_CARD, VALID_CARD, library_config

pytestmark = pytest.mark.django_db


def _audit_text() -> str:
    return " ".join(str(row) for row in AuditEvent.objects.values_list("event", "data", "client_id"))


def test_a_valid_card_is_linked_sealed_and_hashed(resident, library):
    link = link_create(user=resident, partner_connector=library, reference="2900 0000 0000 01", secret="1234")
    link.refresh_from_db()
    assert link.status == PartnerLink.Status.VALID
    assert link.masked_reference == "•••• 0001"
    assert link.expires_on is not None
    assert VALID_CARD[0].encode() not in bytes(link.reference_sealed)
    assert open_reference(link.pk, link.reference_sealed) == VALID_CARD[0]
    assert link.reference_hash == reference_hash(library.pk, VALID_CARD[0])
    created = AuditEvent.objects.get(event="connector.link_created")
    assert created.data == {"connector": str(library.pk), "link": str(link.pk), "status": "valid"}
    text = _audit_text()
    assert VALID_CARD[0] not in text and "1234" not in text


def test_the_sealed_card_number_opens_only_for_its_own_row(resident, make_resident, library):
    link = link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    with pytest.raises(ValueError):
        open_reference("00000000-0000-0000-0000-000000000000", link.reference_sealed)


@pytest.mark.parametrize(
    ("card", "reason"),
    [
        ((VALID_CARD[0], "9999"), RefusalReason.WRONG_SECRET),
        (UNKNOWN_CARD, RefusalReason.UNKNOWN_ACCOUNT),
    ],
)
def test_refused_credentials_store_nothing(resident, library, card, reason):
    with pytest.raises(CredentialsRefused) as refused:
        link_create(user=resident, partner_connector=library, reference=card[0], secret=card[1])
    assert refused.value.reason == reason
    assert not PartnerLink.objects.exists()
    refusal = AuditEvent.objects.get(event="connector.link_refused")
    assert refusal.data == {"connector": str(library.pk), "reason": str(reason)}


@pytest.mark.parametrize(("card", "status"), [(BLOCKED_CARD, "blocked"), (EXPIRED_CARD, "expired")])
def test_blocked_and_expired_cards_are_linked_with_their_status(resident, library, card, status):
    link = link_create(user=resident, partner_connector=library, reference=card[0], secret=card[1])
    assert link.status == status
    if status == "blocked":
        assert "charge_privileges_denied" in link.attributes["block_reasons"]


def test_a_blocked_card_whose_pin_the_library_does_not_check_is_refused_as_blocked(
    resident, library, library_sim
):
    # Some sites do not check PINs of blocked cards: without a confirmed PIN nothing is linked.
    connector = links.connector_for(library)
    assert isinstance(connector, LibraryConnector)
    library_sim.database[BLOCKED_CARD[0]].pin = ""
    original = library_sim._check_pin
    library_sim._check_pin = staticmethod(lambda patron, pin: None)  # type: ignore[method-assign]
    try:
        with pytest.raises(CredentialsRefused) as refused:
            connector.link(BLOCKED_CARD[0], "2345")
    finally:
        library_sim._check_pin = original  # type: ignore[method-assign]
    assert refused.value.reason == RefusalReason.BLOCKED


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_partner_down_stores_nothing(resident, library, library_sim):
    library.config = library_config(library_sim, port=_closed_port())
    library.save()
    with pytest.raises(PartnerUnavailable):
        link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    assert not PartnerLink.objects.exists()
    assert AuditEvent.objects.get(event="connector.link_refused").data["reason"] == "partner_unavailable"


def test_a_slow_partner_times_out_within_the_bound(resident, library, library_sim):
    library_sim.faults.delay = 3.0
    started = time.monotonic()
    with pytest.raises(PartnerUnavailable):
        link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    assert time.monotonic() - started < 2.5  # the login's answer waited read_timeout (1 s)
    assert not PartnerLink.objects.exists()


def test_garbage_from_the_partner_is_a_protocol_error(resident, library, library_sim):
    library_sim.faults.garbage = 5
    with pytest.raises(PartnerProtocolError):
        link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    assert not PartnerLink.objects.exists()


def test_our_refused_sip_login_is_unavailable_for_the_resident(resident, library, library_sim):
    library_sim.faults.refuse_login = True
    with pytest.raises(PartnerUnavailable) as unavailable:
        link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    assert unavailable.value.code == "partner_login_refused"


def test_a_card_number_sip2_cannot_carry_is_refused_before_the_partner(resident, library, library_sim):
    with pytest.raises(InvalidReference):
        link_create(user=resident, partner_connector=library, reference="2900|1", secret="1234")
    assert library_sim.counts["63"] == 0


def test_a_card_linked_to_another_account_is_refused_without_saying_whose(resident, make_resident, library):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    other = make_resident()
    with pytest.raises(LinkError) as refused:
        link_create(user=other, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    assert refused.value.code == "already_linked"
    assert str(refused.value) == "already_linked"
    assert PartnerLink.objects.get().user == resident


def test_a_second_card_for_the_same_partner_is_refused(resident, library):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    with pytest.raises(LinkError) as refused:
        link_create(user=resident, partner_connector=library, reference=BLOCKED_CARD[0], secret="2345")
    assert refused.value.code == "already_has_link"


def test_a_disabled_connector_links_nothing(resident, library):
    library.enabled = False
    library.save()
    with pytest.raises(LinkError):
        link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")


@override_settings(CONNECTOR_LINK_RATE_LIMIT={"per_reference": 2, "per_account": 10, "window_seconds": 900})
def test_attempts_are_throttled_per_card(resident, make_resident, library, library_sim):
    for _ in range(2):
        with pytest.raises(CredentialsRefused):
            link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="0000")
    other = make_resident()
    asked = library_sim.counts["63"]
    with pytest.raises(LinkThrottled) as throttled:
        link_create(user=other, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    assert throttled.value.block.retry_after > 0
    assert library_sim.counts["63"] == asked  # the library was not asked


@override_settings(CONNECTOR_LINK_RATE_LIMIT={"per_reference": 10, "per_account": 2, "window_seconds": 900})
def test_attempts_are_throttled_per_account_even_while_the_partner_is_down(resident, library, library_sim):
    library.config = library_config(library_sim, port=_closed_port())
    library.save()
    for _ in range(2):
        with pytest.raises(PartnerUnavailable):
            link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    library.config = library_config(library_sim)
    library.save()
    with pytest.raises(LinkThrottled):
        link_create(user=resident, partner_connector=library, reference=BLOCKED_CARD[0], secret="2345")
    assert AuditEvent.objects.filter(event="connector.link_refused", data__reason="throttled").count() == 1


def test_refresh_reads_the_current_status(resident, library, library_sim):
    link = link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    library_sim.database[VALID_CARD[0]].flags = frozenset({"card_reported_lost"})
    refreshed = link_refresh(user=resident, link_id=link.pk)
    assert refreshed.status == PartnerLink.Status.BLOCKED
    assert AuditEvent.objects.filter(event="connector.link_refreshed").count() == 1
    del library_sim.database[VALID_CARD[0]]
    assert link_refresh(user=resident, link_id=link.pk).status == PartnerLink.Status.UNLINKED


def test_refresh_while_the_partner_is_down_keeps_the_last_status(resident, library, library_sim):
    link = link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    library.config = library_config(library_sim, port=_closed_port())
    library.save()
    with pytest.raises(PartnerUnavailable):
        link_refresh(user=resident, link_id=link.pk)
    link.refresh_from_db()
    assert (link.status, link.last_error) == ("valid", "partner_unavailable")


def test_refresh_and_remove_only_the_residents_own_links(resident, make_resident, library):
    link = link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    other = make_resident()
    with pytest.raises(LinkError):
        link_refresh(user=other, link_id=link.pk)
    with pytest.raises(LinkError):
        link_remove(user=other, link_id=link.pk)
    assert PartnerLink.objects.filter(pk=link.pk).exists()


def test_remove_writes_the_deprovision_message_in_the_same_transaction(resident, library, library_client):
    link = link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret="1234")
    with pytest.raises(RuntimeError), transaction.atomic():
        link_remove(user=resident, link_id=link.pk)
        raise RuntimeError("the caller's transaction fails")
    assert PartnerLink.objects.filter(pk=link.pk).exists()
    assert not OutboxMessage.objects.filter(kind=KIND_DEPROVISION).exists()

    message = link_remove(user=resident, link_id=link.pk)
    assert not PartnerLink.objects.filter(pk=link.pk).exists()
    assert message.idempotency_key == f"{KIND_DEPROVISION}:{link.pk}"
    assert message.partner == library_client.client_id
    assert VALID_CARD[0] not in str(message.payload)
    removed = AuditEvent.objects.get(event="connector.link_removed")
    assert removed.data["message"] == str(message.pk)

    result = relay_once(kinds=[KIND_DEPROVISION])
    assert result.delivered == 1
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED
    assert message.payload == {}  # secret payload: blanked once delivered


def test_the_library_connector_says_what_sip2_cannot_do(library):
    connector = links.connector_for(library)
    assert connector.erase(None, idempotency_key="k").state == ErasureState.NOT_SUPPORTED
    assert connector.deprovision("1", idempotency_key="k").done is False
    assert connector.provision("1", idempotency_key="k").done is False
    assert connector.health().ok is True
    assert connector.export(VALID_CARD[0])["status"] == "valid"


def test_health_of_a_partner_down(library, library_sim):
    library.config = library_config(library_sim, port=_closed_port())
    library.save()
    health = links.connector_for(library).health()
    assert health.ok is False


def test_timeouts_are_capped_for_a_waiting_resident(library_sim):
    config = sip2_config(library_config(library_sim, connect_timeout=60, read_timeout=60), {})
    assert config.connect_timeout <= 3 and config.read_timeout <= 4 and config.pool_wait <= 1


@pytest.mark.parametrize(
    "config",
    [
        {"host": "", "port": 6001, "institution_id": "X"},
        {"host": "h", "port": "x", "institution_id": "X"},
        {"host": "h", "port": 6001, "institution_id": ""},
        {"host": "h", "port": 6001, "institution_id": "X", "read_timeout": -1},
        {"host": "h", "port": 6001, "institution_id": "X", "surprise": 1},
        {"host": "h", "port": 6001, "institution_id": "X", "login_user": "cum"},
    ],
)
def test_unusable_settings_are_refused(library_client, config):
    with pytest.raises(ConnectorSettingsError):
        partner_connector_configure(client=library_client.client, kind="library", label="L", config=config)


def test_an_unknown_kind_is_refused(library_client):
    with pytest.raises(ConnectorSettingsError):
        partner_connector_configure(client=library_client.client, kind="nope", label="L", config={})


def test_secrets_are_sealed_to_the_row(library, library_sim):
    assert library_sim.login_password.encode() not in bytes(library.secrets_sealed)
    other: Any = type(library).objects.get(pk=library.pk)
    other.pk = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(ConnectorConfigError):
        links.connector_for(other)
