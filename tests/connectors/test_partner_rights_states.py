"""Per-partner state of rights requests (docs/dpo.md, "Partners' answers"): queued, answered
with its date, dead letter and replayed, as the DPO's register and its per-partner summary
show them, and as the resident's erasure status page says them. Every state comes from the
real services: the erasure, the outbox relay, the library connector against its simulator."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import Client as BrowserClient
from django.utils import timezone

from common.crypto import keyed_hash
from connectors.links import link_create
from connectors.models import OutboxMessage, PartnerConnector
from connectors.outbox import relay_once
from connectors.services import outbox_enqueue, outbox_replay_partner, partner_connector_configure
from consent import erasure
from consent.dpo.selectors import partner_summary, rights_requests
from consent.models import RightsRequest
from tests.conftest import staff_mfa_login
from tests.connectors.conftest import VALID_CARD, library_config
from tests.connectors.form_handler import HTTP_FORM_POST

pytestmark = pytest.mark.django_db


@pytest.fixture
def dpo_http(make_resident: Any) -> BrowserClient:
    user = make_resident("dpo@nantesmetropole.fr")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get_or_create(name="dpo")[0])
    return staff_mfa_login(BrowserClient(), user)


@pytest.fixture
def broken_partner(make_client: Any, library_sim: Any) -> tuple[Any, PartnerConnector]:
    """A second library whose connector's secrets no longer open (a key rotated under it):
    every erasure request to it is refused at once and dead-lettered."""
    registered = make_client(name="Médiathèque de Rezé", scopes=["openid", "library_card"])
    connector = partner_connector_configure(
        client=registered.client,
        kind="library",
        label="Médiathèque de Rezé",
        config=library_config(library_sim),
        secrets={"login_password": library_sim.login_password},
    )
    return registered, connector


def _by_partner(row: Any) -> dict[str, Any]:
    return {partner.client_id: partner for partner in row.partners}


def test_each_partner_state_from_queued_to_answered_or_dead(
    make_resident: Any, library: Any, library_client: Any, broken_partner: Any, dpo_http: BrowserClient
) -> None:
    reze, reze_connector = broken_partner
    alice, bob = make_resident("alice@example.org"), make_resident("bob@example.org")
    link_create(user=alice, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    link_create(user=bob, partner_connector=reze_connector, reference=VALID_CARD[0], secret=VALID_CARD[1])
    PartnerConnector.objects.filter(pk=reze_connector.pk).update(secrets_sealed=b"rotated away")

    first = erasure.erasure_now(user=alice, operator=None)
    (row,) = rights_requests()
    queued = _by_partner(row)[library_client.client_id]
    assert (queued.state, queued.name) == ("queued", "Portail des bibliothèques")

    second = erasure.erasure_now(user=bob, operator=None)
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    rows = {row.request.pk: row for row in rights_requests()}
    answered = _by_partner(rows[first.pk])[library_client.client_id]
    assert answered.state == "not_supported" and answered.answered and answered.at is not None
    dead = _by_partner(rows[second.pk])[reze.client_id]
    assert (dead.state, dead.error_type, dead.attempts) == ("dead_letter", "connector_misconfigured", 1)

    # The first request was received 40 days ago: its answer came after the one-month deadline.
    RightsRequest.objects.filter(pk=first.pk).update(requested_at=timezone.now() - timedelta(days=40))
    summary = {item.client_id: item for item in partner_summary(rights_requests())}
    library_line = summary[library_client.client_id]
    assert (library_line.requests, library_line.answered, library_line.late) == (1, 1, 1)
    assert (library_line.failing, library_line.waiting) == (0, 0)
    reze_line = summary[reze.client_id]
    assert (reze_line.requests, reze_line.answered, reze_line.failing, reze_line.late) == (1, 0, 1, 0)

    page = html.unescape(dpo_http.get("/dpo/demandes/").content.decode())
    assert "Réponses des partenaires" in page and "Médiathèque de Rezé" in page
    assert "abandonnée : à remettre en file par un opérateur" in page and "connector_misconfigured" in page
    assert "ne peut pas être demandé par son protocole" in page
    english = html.unescape(dpo_http.get("/dpo/demandes/", HTTP_ACCEPT_LANGUAGE="en").content.decode())
    assert "Partners' answers" in english and "dead letter: an operator must replay it" in english

    # The operator replays it: queued again, attempts reset (the outbox's replay).
    assert outbox_replay_partner(partner=reze.client_id, dead_only=True) == 1
    again = _by_partner({row.request.pk: row for row in rights_requests()}[second.pk])[reze.client_id]
    assert (again.state, again.attempts) == ("queued", 0)
    message = OutboxMessage.objects.get(kind=erasure.KIND_PARTNER_ERASURE, partner=reze.client_id)
    assert (message.status, message.attempts, message.last_error) == ("pending", 0, "")


def test_the_resident_status_page_says_each_partner_state_in_plain_words(
    client: BrowserClient, make_resident: Any, broken_partner: Any
) -> None:
    reze, reze_connector = broken_partner
    bob = make_resident("bob@example.org")
    link_create(user=bob, partner_connector=reze_connector, reference=VALID_CARD[0], secret=VALID_CARD[1])
    PartnerConnector.objects.filter(pk=reze_connector.pk).update(secrets_sealed=b"rotated away")
    request = erasure.erasure_now(user=bob, operator=None)
    RightsRequest.objects.filter(pk=request.pk).update(token_hash=keyed_hash("status-secret"))
    status = "/compte/suppression/etat/status-secret/"
    page = html.unescape(client.get(status).content.decode())
    assert "Médiathèque de Rezé" in page and "en attente de réponse" in page
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    page = html.unescape(client.get(status).content.decode())
    assert "la demande n'a pas pu être transmise à ce service" in page
    assert reze.client_id not in page and "bob@example.org" not in page
    client.cookies.clear()
    english = html.unescape(client.get(status, HTTP_ACCEPT_LANGUAGE="en").content.decode())
    assert "Médiathèque de Rezé" in english
    assert "the request could not be passed on to this service" in english


def test_a_partner_not_answering_is_failing_until_it_does(
    make_resident: Any, library: Any, library_client: Any, partner: Any, dpo_http: BrowserClient
) -> None:
    """A message about the request that the partner keeps refusing with 503 (the test kind
    posting to a real local port): failing, its attempts and error type; once answered, the
    answer stands."""
    alice = make_resident("alice@example.org")
    link_create(user=alice, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = erasure.erasure_now(user=alice, operator=None)
    partner.status = 503
    with transaction.atomic():
        outbox_enqueue(
            kind=HTTP_FORM_POST,
            destination=partner.url,
            payload={"fields": {"n": "1"}, "request_id": str(request.pk)},
            idempotency_key=f"follow-up:{request.pk}",
            partner=library_client.client_id,
        )
    OutboxMessage.objects.filter(kind=erasure.KIND_PARTNER_ERASURE).update(
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    relay_once(kinds=[HTTP_FORM_POST])
    (row,) = rights_requests()
    failing = _by_partner(row)[library_client.client_id]
    assert (failing.state, failing.attempts, failing.error_type) == ("failing", 1, "HTTP 503")
    (line,) = partner_summary([row])
    assert (line.failing, line.waiting, line.answered) == (1, 0, 0)
    page = html.unescape(dpo_http.get("/dpo/demandes/").content.decode())
    assert "en échec (1 tentative)" in page and "HTTP 503" in page
    # The erasure is done here: the open requests' view has no row, the summary still counts it.
    page = html.unescape(dpo_http.get("/dpo/demandes/?etat=ouvertes").content.decode())
    assert "Réponses des partenaires" in page and "Portail des bibliothèques" in page

    OutboxMessage.objects.filter(kind=erasure.KIND_PARTNER_ERASURE).update(next_attempt_at=timezone.now())
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    (row,) = rights_requests()
    assert _by_partner(row)[library_client.client_id].state == "not_supported"
