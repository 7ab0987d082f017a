"""Linking a Libertan card (connectors.links over connectors.transport) against the Naolib
simulator on a real HTTP socket: every outcome, every fault, what is stored and what never is."""

from __future__ import annotations

import time
from datetime import date
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from connectors.links import link_create, link_refresh
from connectors.models import PartnerLink
from connectors.protocol import (
    ConnectorConfigError,
    CredentialsRefused,
    ErasureState,
    InvalidReference,
    PartnerProtocolError,
    PartnerUnavailable,
    RefusalReason,
)
from connectors.sealing import open_reference
from connectors.services import ConnectorSettingsError, partner_connector_configure
from connectors.transport import CardReplaced, TransportConnector, link_secret
from identity.models import AuditEvent
from tests.connectors.conftest import (
    TRANSPORT_BIRTH,
    TRANSPORT_EXPIRED,
    TRANSPORT_NAME,
    TRANSPORT_NO_CONTRACT,
    TRANSPORT_REPLACED,
    TRANSPORT_UNKNOWN,
    TRANSPORT_VALID,
    transport_config,
)

pytestmark = pytest.mark.django_db

SECRET = link_secret(family_name=TRANSPORT_NAME, birth_date=date.fromisoformat(TRANSPORT_BIRTH))


def _link(user, connector, card, secret=SECRET):
    return link_create(user=user, partner_connector=connector, reference=card, secret=secret)


def _everything_stored() -> str:
    links = " ".join(
        str(row) for row in PartnerLink.objects.values_list("attributes", "masked_reference", "last_error")
    )
    audit = " ".join(str(row) for row in AuditEvent.objects.values_list("event", "data", "client_id"))
    return links + audit


def test_a_valid_subscription_is_linked_sealed_without_the_birth_date(resident, transport, transport_sim):
    link = _link(resident, transport, "2501 0000 0000 0001")
    link.refresh_from_db()
    assert link.status == PartnerLink.Status.VALID
    assert link.masked_reference == "•••• 0001"
    assert link.expires_on is not None and link.expires_on > date.today()
    assert link.attributes["contract_type"] == "annual"
    assert open_reference(link.pk, link.reference_sealed) == TRANSPORT_VALID
    assert TRANSPORT_VALID.encode() not in bytes(link.reference_sealed)
    stored = _everything_stored()
    assert TRANSPORT_BIRTH not in stored and "1990" not in stored and TRANSPORT_VALID not in stored
    assert transport_sim.counts["/v1/card-checks"] == 1


def test_an_expired_subscription_is_linked_as_expired(resident, transport):
    link = _link(resident, transport, TRANSPORT_EXPIRED)
    assert link.status == PartnerLink.Status.EXPIRED
    assert link.expires_on is not None and link.expires_on < date.today()
    assert link.attributes["contract_type"] == "monthly"


@pytest.mark.parametrize(
    ("card", "secret"),
    [
        (TRANSPORT_UNKNOWN, SECRET),  # unknown card
        (TRANSPORT_VALID, link_secret(family_name="Dupont", birth_date=date(1990, 4, 12))),  # wrong name
        (TRANSPORT_VALID, link_secret(family_name="Martin", birth_date=date(1991, 4, 12))),  # wrong date
    ],
)
def test_unknown_card_and_wrong_details_are_one_answer(resident, transport, card, secret):
    with pytest.raises(CredentialsRefused) as refused:
        _link(resident, transport, card, secret)
    assert refused.value.reason == RefusalReason.NOT_MATCHING
    assert not PartnerLink.objects.exists()
    assert AuditEvent.objects.get(event="connector.link_refused").data["reason"] == "not_matching"


def test_the_family_name_is_compared_without_case_or_extra_spaces(resident, transport):
    secret = link_secret(family_name="  MARTIN ", birth_date=date.fromisoformat(TRANSPORT_BIRTH))
    assert _link(resident, transport, TRANSPORT_VALID, secret).status == PartnerLink.Status.VALID


def test_a_card_without_contract_is_refused_with_its_own_reason(resident, transport):
    with pytest.raises(CredentialsRefused) as refused:
        _link(resident, transport, TRANSPORT_NO_CONTRACT)
    assert refused.value.reason == RefusalReason.NO_CONTRACT
    assert not PartnerLink.objects.exists()


def test_a_replaced_card_names_the_new_card_masked(resident, transport):
    with pytest.raises(CardReplaced) as refused:
        _link(resident, transport, TRANSPORT_REPLACED)
    assert refused.value.reason == RefusalReason.REPLACED
    assert refused.value.masked_replacement == "•••• 0001"
    assert not PartnerLink.objects.exists()


@pytest.mark.parametrize(
    "card", ["1234", "25010000000000012345678", "2501-0000-0000", "２５０１０００００００００００１"]
)
def test_a_card_number_that_cannot_be_one_is_not_sent(resident, transport, transport_sim, card):
    with pytest.raises(InvalidReference):
        _link(resident, transport, card)
    assert transport_sim.counts["/v1/card-checks"] == 0


def test_a_malformed_proof_is_refused_without_asking(resident, transport, transport_sim):
    with pytest.raises(CredentialsRefused):
        _link(resident, transport, TRANSPORT_VALID, secret="not json")
    assert transport_sim.counts["/v1/card-checks"] == 0


def test_the_partner_down_is_unavailable_and_nothing_stored(resident, transport, transport_sim):
    transport_sim.stop()
    with pytest.raises(PartnerUnavailable):
        _link(resident, transport, TRANSPORT_VALID)
    assert not PartnerLink.objects.exists()


def test_a_slow_partner_times_out_within_the_bound(resident, transport, transport_sim):
    transport_sim.faults.mode = "slow"
    started = time.monotonic()
    with pytest.raises(PartnerUnavailable) as unavailable:
        _link(resident, transport, TRANSPORT_VALID)
    assert time.monotonic() - started < 1.9
    assert unavailable.value.code == "partner_timeout"


@pytest.mark.parametrize(
    ("mode", "error"), [("garbage", PartnerProtocolError), ("error", PartnerUnavailable)]
)
def test_garbage_and_server_errors(resident, transport, transport_sim, mode, error):
    transport_sim.faults.mode = mode
    with pytest.raises(error):
        _link(resident, transport, TRANSPORT_VALID)
    assert not PartnerLink.objects.exists()


def test_our_key_refused_is_a_configuration_failure(resident, transport_sim, transport_client):
    connector = partner_connector_configure(
        client=transport_client.client,
        kind="transport",
        label="Naolib",
        config=transport_config(transport_sim),
        secrets={"api_key": "wrong"},
    )
    with pytest.raises(PartnerUnavailable) as unavailable:
        _link(resident, connector, TRANSPORT_VALID)
    assert unavailable.value.code == "partner_login_refused"


def test_refresh_follows_the_contract_and_a_replacement(resident, transport, transport_sim):
    link = _link(resident, transport, TRANSPORT_VALID)
    transport_sim.state.cards[TRANSPORT_VALID].replaced_by = "2501000000000099"
    link = link_refresh(user=resident, link_id=link.pk)
    assert link.status == PartnerLink.Status.UNLINKED
    assert link.attributes == {"replaced_by": "•••• 0099"}
    transport_sim.state.cards.pop(TRANSPORT_VALID)
    assert link_refresh(user=resident, link_id=link.pk).status == PartnerLink.Status.UNLINKED


def test_a_failed_refresh_keeps_the_last_status(resident, transport, transport_sim):
    link = _link(resident, transport, TRANSPORT_VALID)
    transport_sim.faults.mode = "error"
    with pytest.raises(PartnerUnavailable):
        link_refresh(user=resident, link_id=link.pk)
    link.refresh_from_db()
    assert link.status == PartnerLink.Status.VALID and link.last_error == "partner_unavailable"


def test_health_and_configuration(transport_sim):
    connector = TransportConnector(
        config=transport_config(transport_sim), secrets={"api_key": transport_sim.api_key}, partner="naolib"
    )
    assert connector.health().ok
    transport_sim.faults.mode = "garbage"
    assert not connector.health().ok
    assert TransportConnector.check_config({"base_url": "http://partner.example"}, {"api_key": "k"})
    assert TransportConnector.check_config({"base_url": "https://partner.example"}, {})
    assert TransportConnector.check_config({"base_url": "https://partner.example", "x": 1}, {"api_key": "k"})
    assert not TransportConnector.check_config({"base_url": "https://partner.example"}, {"api_key": "k"})
    with pytest.raises(ConnectorSettingsError):
        partner_connector_configure(
            client=None, kind="transport", label="x", config={"base_url": "ftp://x"}, secrets={}
        )
    broken = TransportConnector(config={"base_url": "ftp://x"}, secrets={}, partner="naolib")
    assert not broken.health().ok
    with pytest.raises(ConnectorConfigError):
        broken.refresh(TRANSPORT_VALID)


def test_provision_is_not_pretended_and_replacement_notices_are_read(transport_sim):
    connector = TransportConnector(
        config=transport_config(transport_sim), secrets={"api_key": transport_sim.api_key}, partner="naolib"
    )
    assert not connector.provision(TRANSPORT_VALID, idempotency_key="k").done
    assert not connector.deprovision(TRANSPORT_VALID, idempotency_key="k").done
    notices, _next = connector.replacement_notices()
    assert notices == [("2501000000000004", "•••• 0001")]
    assert connector.erase(None, idempotency_key="k").state == ErasureState.NOT_SUPPORTED


def test_replacement_notices_mark_the_linked_card(resident, transport, transport_sim):
    link = _link(resident, transport, TRANSPORT_VALID)
    transport_sim.state.cards[TRANSPORT_VALID].replaced_by = "2501000000000077"
    out = StringIO()
    call_command("transport_replacements", stdout=out)
    link.refresh_from_db()
    assert link.status == PartnerLink.Status.UNLINKED and link.attributes == {"replaced_by": "•••• 0077"}
    assert "1 link(s) marked replaced" in out.getvalue()
    audit = AuditEvent.objects.get(event="connector.link_replaced")
    assert audit.data == {"connector": str(transport.pk), "link": str(link.pk)}
    call_command("transport_replacements", stdout=StringIO())  # twice: nothing more
    assert AuditEvent.objects.filter(event="connector.link_replaced").count() == 1


def test_replacement_notices_with_naolib_down_fail_loudly(transport, transport_sim):
    transport_sim.stop()
    with pytest.raises(CommandError):
        call_command("transport_replacements", stdout=StringIO(), stderr=StringIO())
