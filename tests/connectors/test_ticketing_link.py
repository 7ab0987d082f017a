"""Linking a Carte Blanche (connectors.links over connectors.ticketing) against the ticketing
platform simulator on a real HTTP socket: every outcome, refresh, faults (down, slow,
garbage), configuration, health, and what is stored and what never is."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from connectors.links import link_create, link_refresh
from connectors.models import PartnerLink
from connectors.protocol import (
    ConnectorConfigError,
    CredentialsRefused,
    InvalidReference,
    PartnerProtocolError,
    PartnerUnavailable,
    RefusalReason,
)
from connectors.sealing import open_reference
from connectors.services import ConnectorSettingsError, partner_connector_configure
from connectors.ticketing import TicketingConnector, link_secret
from identity.models import AuditEvent
from tests.connectors.conftest import (
    TICKETING_BIRTH,
    TICKETING_ELIGIBLE,
    TICKETING_NOT_ELIGIBLE,
    TICKETING_UNKNOWN,
    ticketing_config,
)

pytestmark = pytest.mark.django_db

SECRET = link_secret(birth_date=date.fromisoformat(TICKETING_BIRTH))
WRONG_SECRET = link_secret(birth_date=date(1990, 4, 13))


def _link(user, connector, card, secret=SECRET):
    return link_create(user=user, partner_connector=connector, reference=card, secret=secret)


def _everything_stored() -> str:
    links = " ".join(
        str(row) for row in PartnerLink.objects.values_list("attributes", "masked_reference", "last_error")
    )
    audit = " ".join(str(row) for row in AuditEvent.objects.values_list("event", "data", "client_id"))
    return links + audit


def _connector(sim, **overrides) -> TicketingConnector:
    return TicketingConnector(
        config=ticketing_config(sim, **overrides), secrets={"api_key": sim.api_key}, partner="billetterie"
    )


def test_an_eligible_card_is_linked_sealed_without_the_birth_date(resident, ticketing, ticketing_sim):
    link = _link(resident, ticketing, "7700 0000 0000 0001")
    link.refresh_from_db()
    assert link.status == PartnerLink.Status.VALID
    assert link.masked_reference == "•••• 0001"
    assert link.expires_on is not None and link.expires_on > date.today()
    assert link.attributes["scheme"] == "carte_blanche"
    assert link.attributes["scheme_label"].startswith("Carte Blanche")
    assert open_reference(link.pk, link.reference_sealed) == TICKETING_ELIGIBLE
    stored = _everything_stored()
    assert TICKETING_BIRTH not in stored and "1990" not in stored and TICKETING_ELIGIBLE not in stored
    assert ticketing_sim.counts["/v1/eligibility-checks"] == 1


def test_a_known_card_without_eligibility_is_linked_without_it(resident, ticketing):
    link = _link(resident, ticketing, TICKETING_NOT_ELIGIBLE)
    assert link.status == PartnerLink.Status.EXPIRED
    assert link.expires_on is None and "scheme" not in link.attributes


@pytest.mark.parametrize(
    ("card", "secret"),
    [(TICKETING_UNKNOWN, SECRET), (TICKETING_ELIGIBLE, WRONG_SECRET), (TICKETING_ELIGIBLE, "not json")],
)
def test_an_unknown_card_and_a_wrong_birth_date_get_the_same_refusal(resident, ticketing, card, secret):
    with pytest.raises(CredentialsRefused) as refused:
        _link(resident, ticketing, card, secret)
    assert refused.value.reason == RefusalReason.NOT_MATCHING
    assert not PartnerLink.objects.exists()
    event = AuditEvent.objects.get(event="connector.link_refused")
    assert event.data["reason"] == "not_matching"
    assert card not in _everything_stored()


def test_the_platform_answers_unknown_card_and_wrong_date_alike(ticketing_sim):
    connector = _connector(ticketing_sim)
    answers = []
    for card, secret in ((TICKETING_UNKNOWN, SECRET), (TICKETING_ELIGIBLE, WRONG_SECRET)):
        with pytest.raises(CredentialsRefused) as refused:
            connector.link(card, secret)
        answers.append((refused.value.reason, str(refused.value)))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("card", ["12 34", "7700000000000001x", "7" * 21, "７７００００００"])
def test_a_card_number_that_cannot_be_one_is_refused_before_asking(resident, ticketing, ticketing_sim, card):
    with pytest.raises(InvalidReference):
        _link(resident, ticketing, card)
    assert ticketing_sim.counts["/v1/eligibility-checks"] == 0


def test_income_data_sent_by_a_platform_is_never_kept(resident, ticketing, ticketing_sim):
    card = ticketing_sim.state.cards[TICKETING_ELIGIBLE]
    assert card.eligibility is not None
    card.eligibility = {**card.eligibility, "household_income": 12345, "quotient_familial": 678}
    link = _link(resident, ticketing, TICKETING_ELIGIBLE)
    assert set(link.attributes) == {"scheme", "scheme_label", "valid_from"}
    assert "12345" not in _everything_stored() and "678" not in _everything_stored()


def test_refresh_follows_the_platform(resident, ticketing, ticketing_sim):
    link = _link(resident, ticketing, TICKETING_ELIGIBLE)
    card = ticketing_sim.state.cards[TICKETING_ELIGIBLE]
    assert card.eligibility is not None
    card.eligibility = {**card.eligibility, "valid_until": (date.today() - timedelta(days=1)).isoformat()}
    link = link_refresh(user=resident, link_id=link.pk)
    assert link.status == PartnerLink.Status.EXPIRED and "scheme" not in link.attributes
    card.eligibility = {**card.eligibility, "valid_until": (date.today() + timedelta(days=10)).isoformat()}
    link = link_refresh(user=resident, link_id=link.pk)
    assert link.status == PartnerLink.Status.VALID
    assert link.expires_on == date.today() + timedelta(days=10)
    del ticketing_sim.state.cards[TICKETING_ELIGIBLE]
    link = link_refresh(user=resident, link_id=link.pk)
    assert link.status == PartnerLink.Status.UNLINKED
    assert ticketing_sim.counts["/v1/eligibility-status"] == 3


def test_platform_down_nothing_is_stored(resident, ticketing, ticketing_sim):
    ticketing_sim.stop()
    with pytest.raises(PartnerUnavailable):
        _link(resident, ticketing, TICKETING_ELIGIBLE)
    assert not PartnerLink.objects.exists()


def test_a_slow_platform_times_out_within_the_bound(resident, ticketing, ticketing_sim):
    ticketing_sim.faults.mode = "slow"
    started = time.monotonic()
    with pytest.raises(PartnerUnavailable) as unavailable:
        _link(resident, ticketing, TICKETING_ELIGIBLE)
    assert time.monotonic() - started < 1.9  # read_timeout 1 s, the platform takes 2 s
    assert unavailable.value.code == "partner_timeout"


def test_a_refresh_that_fails_keeps_the_last_known_state(resident, ticketing, ticketing_sim):
    link = _link(resident, ticketing, TICKETING_ELIGIBLE)
    ticketing_sim.faults.mode = "garbage"
    with pytest.raises(PartnerProtocolError):
        link_refresh(user=resident, link_id=link.pk)
    link.refresh_from_db()
    assert link.status == PartnerLink.Status.VALID and link.last_error == "partner_protocol_error"


@pytest.mark.parametrize(
    "answer",
    [
        {"result": "maybe"},
        {"result": "eligible"},
        {"result": "eligible", "eligibility": {"scheme": "Carte Blanche!", "valid_until": "2030-01-01"}},
        {"result": "eligible", "eligibility": {"scheme": "carte_blanche", "valid_until": "soon"}},
        {"result": "eligible", "eligibility": {"scheme": "carte_blanche"}},
    ],
)
def test_answers_outside_the_contract_are_protocol_errors(ticketing_sim, answer):
    connector = _connector(ticketing_sim)
    with pytest.raises(PartnerProtocolError):
        connector._outcome(TICKETING_ELIGIBLE, answer)


def test_garbage_and_errors_are_clear_errors(ticketing_sim):
    connector = _connector(ticketing_sim)
    ticketing_sim.faults.mode = "garbage"
    with pytest.raises(PartnerProtocolError):
        connector.link(TICKETING_ELIGIBLE, SECRET)
    ticketing_sim.faults.mode = "error"
    with pytest.raises(PartnerUnavailable):
        connector.link(TICKETING_ELIGIBLE, SECRET)


def test_our_api_key_refused_is_an_unavailable_partner(ticketing_sim):
    connector = TicketingConnector(
        config=ticketing_config(ticketing_sim), secrets={"api_key": "wrong"}, partner="billetterie"
    )
    with pytest.raises(PartnerUnavailable) as unavailable:
        connector.link(TICKETING_ELIGIBLE, SECRET)
    assert unavailable.value.code == "partner_login_refused"
    assert connector.health().ok is False


def test_health(ticketing_sim):
    connector = _connector(ticketing_sim)
    assert connector.health().ok is True
    ticketing_sim.stop()
    health = connector.health()
    assert health.ok is False and health.detail == "partner_unavailable"


def test_the_configuration_is_checked(ticketing_client, ticketing_sim):
    with pytest.raises(ConnectorSettingsError) as problems:
        partner_connector_configure(
            client=ticketing_client.client,
            kind="ticketing",
            label="Billetterie",
            config={"base_url": "http://ticketing.example.org", "colour": "blue"},
            secrets={},
        )
    text = " ".join(problems.value.problems)
    assert "unknown setting 'colour'" in text and "base_url must be https" in text
    with pytest.raises(ConnectorConfigError):
        TicketingConnector(config={}, secrets={}, partner="x").link(TICKETING_ELIGIBLE, SECRET)
