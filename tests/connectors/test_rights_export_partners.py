"""The export asks every partner through the outbox (consent.rights_requests,
connectors/rights_export.py): one message per partner with a connector that knows the
resident, written with the request; each answer recorded (data encrypted, state shown on the
resident's page, the DPO's register and in the archive); the archive waits a bounded time for
the partners, is built with what arrived, and a partner's data arriving later makes a new
version, emailed with a new one-time link. The partners are the SIP2 and Naolib simulators on
real sockets; the relay and the handlers are the real ones."""

from __future__ import annotations

import html
import io
import json
import re
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client as BrowserClient
from django.utils import timezone

from connectors.links import link_create
from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from connectors.rights_export import PARTNER_EXPORT_MAX_ATTEMPTS
from connectors.subjects import partner_subject
from connectors.ticketing import link_secret as ticketing_link_secret
from connectors.ticketing_simulator import sample_resident
from connectors.transport import link_secret
from consent import rights_requests
from consent.models import RightsPartnerData, RightsRequest, RightsRequestState
from tests.conftest import deliver_emails, open_session, staff_mfa_login
from tests.connectors.conftest import (
    TICKETING_BIRTH,
    TICKETING_ELIGIBLE,
    TRANSPORT_BIRTH,
    TRANSPORT_NAME,
    TRANSPORT_VALID,
    VALID_CARD,
)

pytestmark = pytest.mark.django_db

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "export-schema.json").read_text())
LINK = re.compile(r"https?://[^\s]+(/compte/export/telecharger/[^/\s]+/)")
SECRET = link_secret(family_name=TRANSPORT_NAME, birth_date=date.fromisoformat(TRANSPORT_BIRTH))
PAGE = "/compte/export/"


@pytest.fixture
def dpo_http(make_resident: Any) -> BrowserClient:
    user = make_resident("dpo@nantesmetropole.fr")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get_or_create(name="dpo")[0])
    return staff_mfa_login(BrowserClient(), user)


def ask(user: Any) -> RightsRequest:
    outcome = rights_requests.export_request(user=user)
    assert outcome.created and outcome.request is not None
    return outcome.request


def partner_messages() -> Any:
    return OutboxMessage.objects.filter(kind=rights_requests.KIND_PARTNER_EXPORT)


def make_due(kind: str) -> None:
    """Time passes: the messages of `kind` are due now (the backoff or the wait is over)."""
    OutboxMessage.objects.filter(kind=kind, status=OutboxMessage.Status.PENDING).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def emailed_links(user: Any) -> list[str]:
    deliver_emails()
    links = [match.group(1) for m in mail.outbox if m.to == [user.email] for match in LINK.finditer(m.body)]
    mail.outbox.clear()
    return links


def export_json(browser: BrowserClient, link: str) -> dict[str, Any]:
    response = browser.post(link)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        envelope = json.loads(archive.read("export.json"))
        envelope["__html__"] = archive.read("export.html").decode()
    return envelope


def partners_of(envelope: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["partner"]: item for item in envelope["partners"]}


def page(browser: BrowserClient, url: str) -> str:
    response = browser.get(url)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_each_partner_is_asked_and_its_data_joins_the_archive(
    client: BrowserClient,
    resident: Any,
    library: Any,
    library_client: Any,
    transport: Any,
    transport_client: Any,
    settings: Any,
) -> None:
    settings.RIGHTS_EXPORT_PARTNER_WAIT = 300
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    link_create(user=resident, partner_connector=transport, reference=TRANSPORT_VALID, secret=SECRET)
    request = ask(resident)
    # One message per partner, with the request; the card numbers sealed, never in clear.
    messages = {message.partner: message for message in partner_messages()}
    assert set(messages) == {library_client.client_id, transport_client.client_id}
    payloads = str([m.payload for m in messages.values()])
    assert VALID_CARD[0] not in payloads and TRANSPORT_VALID not in payloads
    assert all(m.payload["details"]["subject"] for m in messages.values())
    # The archive waits for the partners (a bounded time): nothing is built yet.
    (build,) = OutboxMessage.objects.filter(kind=rights_requests.KIND_EXPORT)
    assert build.next_attempt_at > timezone.now() + timedelta(seconds=200)
    assert relay_once(kinds=[rights_requests.KIND_EXPORT]).processed == 0

    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 2
    request.refresh_from_db()
    states = {key: value["state"] for key, value in request.progress["partners"].items()}
    assert states == {library_client.client_id: "answered", transport_client.client_id: "answered"}
    assert all("details" not in m.payload for m in partner_messages())  # dropped once answered
    # Every partner answered: the archive is built now, without waiting any longer.
    assert relay_once(kinds=[rights_requests.KIND_EXPORT]).delivered == 1
    request.refresh_from_db()
    assert request.state == RightsRequestState.DONE and request.progress["version"] == 1

    (link,) = emailed_links(resident)
    open_session(client, resident, ["pwd"])
    envelope = export_json(client, link)
    rendered = envelope.pop("__html__")
    jsonschema.validate(envelope, SCHEMA)
    partners = partners_of(envelope)
    assert partners[library_client.client_id]["data"]["library"]["status"] == "valid"
    naolib = partners[transport_client.client_id]
    assert naolib["state"] == "answered"
    assert naolib["data"]["transport"]["attributes"]["contract_type"] == "annual"
    assert "Vos données chez les services partenaires" in html.unescape(rendered)
    assert TRANSPORT_BIRTH not in json.dumps(envelope)
    # Downloaded, nobody still to answer: the partners' data goes with the archive.
    assert not RightsPartnerData.objects.filter(request=request).exists()


def test_a_partner_down_is_listed_then_its_data_joins_a_new_version(
    client: BrowserClient,
    resident: Any,
    transport: Any,
    transport_sim: Any,
    transport_client: Any,
    library: Any,
    library_client: Any,
    settings: Any,
) -> None:
    settings.RIGHTS_EXPORT_PARTNER_WAIT = 0
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    link_create(user=resident, partner_connector=transport, reference=TRANSPORT_VALID, secret=SECRET)
    transport_sim.stop()
    request = ask(resident)
    relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT])
    naolib_message = partner_messages().get(partner=transport_client.client_id)
    assert naolib_message.status == OutboxMessage.Status.PENDING and naolib_message.attempts == 1
    # The wait is over: the archive is built with what arrived; Naolib is listed as failing.
    assert relay_once(kinds=[rights_requests.KIND_EXPORT]).delivered == 1
    (first_link,) = emailed_links(resident)
    open_session(client, resident, ["pwd"])
    text = page(client, PAGE)
    assert "le service ne répond pas pour le moment" in text
    first = export_json(client, first_link)
    first.pop("__html__")
    jsonschema.validate(first, SCHEMA)
    assert partners_of(first)[transport_client.client_id]["state"] == "failing"
    assert partners_of(first)[transport_client.client_id]["data"] == {}
    assert partners_of(first)[library_client.client_id]["state"] == "answered"
    # Naolib may still answer: the library's data is kept (encrypted) for the next version.
    assert RightsPartnerData.objects.filter(request=request, client_id=library_client.client_id).exists()

    # Naolib is back: the retry answers, and its data makes a new version, emailed.
    transport_sim.start()
    make_due(rights_requests.KIND_PARTNER_EXPORT)
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    assert relay_once(kinds=[rights_requests.KIND_EXPORT_UPDATE]).delivered == 1
    request.refresh_from_db()
    assert request.progress["version"] == 2 and request.downloaded_at is None
    (second_link,) = emailed_links(resident)
    assert second_link != first_link
    assert "c'est sa version 2" in page(client, PAGE)
    assert "le service a transmis ses données" in page(client, PAGE)
    spent = client.post(first_link)  # the previous version's link: replaced, said so
    assert spent.status_code == 410
    assert "remplacée par une version plus complète" in html.unescape(spent.content.decode())
    second = export_json(client, second_link)
    second.pop("__html__")
    jsonschema.validate(second, SCHEMA)
    partners = partners_of(second)
    assert partners[transport_client.client_id]["data"]["transport"]["status"] == "valid"
    assert partners[library_client.client_id]["data"]["library"]["status"] == "valid"
    # A redelivered update finds nothing new: no third version, no email.
    OutboxMessage.objects.filter(kind=rights_requests.KIND_EXPORT_UPDATE).update(
        status=OutboxMessage.Status.PENDING, next_attempt_at=timezone.now()
    )
    relay_once(kinds=[rights_requests.KIND_EXPORT_UPDATE])
    request.refresh_from_db()
    assert request.progress["version"] == 2 and emailed_links(resident) == []


def test_garbage_is_recorded_failed_and_shown_never_a_500(
    client: BrowserClient,
    resident: Any,
    transport: Any,
    transport_sim: Any,
    transport_client: Any,
    dpo_http: BrowserClient,
    settings: Any,
) -> None:
    settings.RIGHTS_EXPORT_PARTNER_WAIT = 300
    link_create(user=resident, partner_connector=transport, reference=TRANSPORT_VALID, secret=SECRET)
    transport_sim.faults.mode = "garbage"
    request = ask(resident)
    # An unreadable answer is retried like no answer (a passing fault must not cost the data)…
    first = relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT])
    assert first.delivered == 0 and first.retried == 1
    request.refresh_from_db()
    assert request.progress["partners"][transport_client.client_id]["state"] == "requested"
    # …and recorded failed on the last attempt.
    partner_messages().update(attempts=PARTNER_EXPORT_MAX_ATTEMPTS - 1, next_attempt_at=timezone.now())
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    request.refresh_from_db()
    answer = request.progress["partners"][transport_client.client_id]
    assert answer["state"] == "failed" and "partner_protocol_error" in answer["detail"]
    assert relay_once(kinds=[rights_requests.KIND_EXPORT]).delivered == 1  # built at once: all answered
    open_session(client, resident, ["pwd"])
    assert "le service n'a pas pu nous transmettre vos données" in page(client, PAGE)
    register = page(dpo_http, "/dpo/demandes/")
    assert "échec : réponse illisible, ou partenaire injoignable" in register
    assert "partner_protocol_error" in register


def test_unreachable_after_every_attempt_is_failed(
    resident: Any, transport: Any, transport_sim: Any, transport_client: Any
) -> None:
    link_create(user=resident, partner_connector=transport, reference=TRANSPORT_VALID, secret=SECRET)
    transport_sim.stop()
    request = ask(resident)
    partner_messages().update(attempts=PARTNER_EXPORT_MAX_ATTEMPTS - 1)
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    request.refresh_from_db()
    answer = request.progress["partners"][transport_client.client_id]
    assert answer["state"] == "failed" and "partner_unavailable" in answer["detail"]


def test_a_resident_known_by_no_partner_is_built_at_once(resident: Any, transport: Any) -> None:
    request = ask(resident)
    assert not partner_messages().exists()
    assert relay_once(kinds=[rights_requests.KIND_EXPORT]).delivered == 1
    request.refresh_from_db()
    assert request.state == RightsRequestState.DONE and request.progress["partners"] == {}


def test_the_ticketing_platform_is_asked_by_the_resident_s_subject(
    client: BrowserClient, resident: Any, ticketing: Any, ticketing_sim: Any, ticketing_client: Any
) -> None:
    """The ticketing kind names residents by the `sub` its client receives: the message carries
    it, the platform's orders join the archive."""
    subject = partner_subject(ticketing_client.client_id, resident)
    ticketing_sim.add_resident(subject, **sample_resident())
    secret = ticketing_link_secret(birth_date=date.fromisoformat(TICKETING_BIRTH))
    link_create(user=resident, partner_connector=ticketing, reference=TICKETING_ELIGIBLE, secret=secret)
    request = ask(resident)
    (message,) = partner_messages()
    assert message.payload["details"]["subject"] == subject
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    assert relay_once(kinds=[rights_requests.KIND_EXPORT]).delivered == 1
    (link,) = emailed_links(resident)
    open_session(client, resident, ["pwd"])
    envelope = export_json(client, link)
    platform = partners_of(envelope)[ticketing_client.client_id]
    assert platform["state"] == "answered"
    assert platform["data"]["ticketing"]["orders"][0]["id"] == "ORD-1001"
    request.refresh_from_db()
    assert request.progress["partners"][ticketing_client.client_id]["state"] == "answered"
