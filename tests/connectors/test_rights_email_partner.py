"""The email connector (connectors/email_partner.py): for a partner with no API, the export and
erasure requests go by email (through the outbox) to its data-protection contact, and an
operator records the partner's answer in the admin (connectors/partner_answers.py): the data
joins the resident's archive, the states are shown to the resident and the DPO. The library
here has both its SIP2 connector (the simulator on a real socket) and an email connector."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client as BrowserClient
from django.utils import timezone

from common.crypto import keyed_hash
from connectors import registry
from connectors.links import connector_for, link_create
from connectors.models import OutboxMessage, PartnerConnector, PartnerRightsAsk
from connectors.outbox import relay_once
from connectors.protocol import CredentialsRefused
from connectors.rights_erasure import aggregate
from connectors.rights_export import deliver_partner_export
from connectors.services import partner_connector_configure
from connectors.subjects import partner_subject
from consent import erasure, rights_requests
from consent.models import RightsRequest
from identity.models import AuditEvent
from tests.conftest import deliver_emails, open_session, staff_mfa_login
from tests.connectors.conftest import VALID_CARD
from tests.connectors.test_rights_export_partners import (  # noqa: F401 - the DPO's signed-in client
    dpo_http,
    emailed_links,
    export_json,
    page,
    partners_of,
)

pytestmark = pytest.mark.django_db

CONTACT = "dpo@bibliotheques.example"
ASKS = "/admin/connectors/partnerrightsask/"


@pytest.fixture
def email_connector(library: PartnerConnector, library_client: Any) -> PartnerConnector:
    """The library's email connector, next to its SIP2 one."""
    return partner_connector_configure(
        client=library_client.client,
        kind="email",
        label="Bibliothèques — délégué à la protection des données",
        config={"contact_email": CONTACT, "contact_name": "Madame la déléguée"},
        secrets={},
    )


def partner_emails() -> list[Any]:
    deliver_emails()
    found = [message for message in mail.outbox if message.to == [CONTACT]]
    return found


def record(admin: BrowserClient, ask: PartnerRightsAsk, **fields: Any) -> Any:
    return admin.post(f"{ASKS}{ask.pk}/change/", fields)


def test_configuration_health_and_no_link(
    email_connector: PartnerConnector, client: BrowserClient, resident: Any
):
    cls = registry.connector_class("email")
    assert cls is not None
    assert cls.check_config({}, {}) == ["contact_email is required: the partner's data-protection contact"]
    assert cls.check_config({"contact_email": "not an address"}, {}) == [
        "contact_email is not an email address"
    ]
    assert cls.check_config({"contact_email": CONTACT, "url": "x"}, {}) == ["unknown setting 'url'"]
    connector = connector_for(email_connector)
    assert connector.health().ok
    with pytest.raises(CredentialsRefused):
        connector.link("123", "456")
    # The cards page offers the library's SIP2 form, never the email connector.
    open_session(client, resident, ["pwd"])
    text = page(client, "/compte/cartes/")
    assert "Bibliothèques de Nantes Métropole" in text
    assert email_connector.label not in text and str(email_connector.pk) not in text


def test_the_erasure_aggregation_lets_the_email_connector_ask_what_sip2_cannot() -> None:
    assert aggregate(["not_supported", "requested"]) == "requested"
    assert aggregate(["not_supported"]) == "not_supported"
    assert aggregate(["erased", "requested"]) == "requested"
    assert aggregate(["erased", "refused", "requested"]) == "refused"
    assert aggregate(["erased", "not_supported"]) == "erased"


def test_export_by_email_end_to_end(
    client: BrowserClient,
    admin_client: BrowserClient,
    dpo_http: BrowserClient,  # noqa: F811
    resident: Any,
    library: PartnerConnector,
    library_client: Any,
    email_connector: PartnerConnector,
    settings: Any,
) -> None:
    settings.RIGHTS_EXPORT_PARTNER_WAIT = 300
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = rights_requests.export_request(user=resident).request
    assert request is not None
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    request.refresh_from_db()
    answer = request.progress["partners"][library_client.client_id]
    assert answer["state"] == "requested" and "library: answered" in answer["detail"]
    (ask,) = PartnerRightsAsk.objects.all()
    assert (ask.kind, ask.state, ask.connector_id) == ("export", "requested", email_connector.pk)
    assert ask.due_at == request.deadline

    # The email to the partner's data-protection contact: our reference, what is asked, the
    # one-month deadline, the resident's sub at this partner and the card linked there; nothing else.
    (email,) = partner_emails()
    assert str(request.pk) in email.subject and str(request.pk) in email.body
    assert "copie des données personnelles" in email.body and "article 12.3" in email.body
    assert partner_subject(library_client.client_id, resident) in email.body
    assert VALID_CARD[0] in email.body
    assert resident.email not in email.body and resident.family_name not in email.body
    assert "dpo@nantesmetropole.fr" in email.body

    # Every partner has an answer or was asked by email: the archive is built with the SIP2 data.
    assert relay_once(kinds=[rights_requests.KIND_EXPORT]).delivered == 1
    (first_link,) = emailed_links(resident)
    open_session(client, resident, ["pwd"])
    text = page(client, "/compte/export/")
    assert "demande envoyée par e-mail au délégué à la protection des données du service" in text
    assert "demandée par e-mail à son délégué" in page(dpo_http, "/dpo/demandes/")

    # The operator records the partner's answer: pasted JSON, in the admin, audited.
    listing = page(admin_client, ASKS)
    assert email_connector.label in listing
    form = page(admin_client, f"{ASKS}{ask.pk}/change/")
    assert str(request.pk) in form and "Enregistrer la réponse" in form
    response = record(admin_client, ask, answer="answered", data_json="")
    assert response.status_code == 200 and "Joignez le fichier du partenaire" in html.unescape(
        response.content.decode()
    )
    response = record(admin_client, ask, answer="answered", data_json="{not json")
    assert response.status_code == 200 and "Ce n'est pas du JSON valide" in html.unescape(
        response.content.decode()
    )
    data = {"inscription": {"depuis": "2019-09-01"}, "prêts_en_cours": 2}
    response = record(admin_client, ask, answer="answered", data_json=json.dumps(data))
    assert response.status_code == 302
    ask.refresh_from_db()
    assert ask.state == "answered" and ask.answered_at is not None
    audit = AuditEvent.objects.get(event="connectors.partner_answer_recorded")
    assert set(audit.data) == {"ask", "request", "kind", "state"} and "2019" not in str(audit.data)
    # Recorded once: a second post changes nothing.
    assert record(admin_client, ask, answer="refused", reason="x").status_code == 200
    ask.refresh_from_db()
    assert ask.state == "answered"

    # A new version of the archive with the partner's data, emailed; both pages say so.
    assert relay_once(kinds=[rights_requests.KIND_EXPORT_UPDATE]).delivered == 1
    (second_link,) = emailed_links(resident)
    assert second_link != first_link
    envelope = export_json(client, second_link)
    library_data = partners_of(envelope)[library_client.client_id]
    assert library_data["state"] == "answered"
    assert library_data["data"]["email"] == data and library_data["data"]["library"]["status"] == "valid"
    assert "le service a transmis ses données" in page(client, "/compte/export/")
    assert "données reçues (dans l'archive)" in page(dpo_http, "/dpo/demandes/")


def test_an_uploaded_file_is_the_partner_data(
    admin_client: BrowserClient, resident: Any, library: PartnerConnector, email_connector: PartnerConnector
) -> None:
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = rights_requests.export_request(user=resident).request
    relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT])
    (ask,) = PartnerRightsAsk.objects.all()
    upload = SimpleUploadedFile("lecteur.csv", b"carte;prets\n29000000000001;2\n", content_type="text/csv")
    response = admin_client.post(f"{ASKS}{ask.pk}/change/", {"answer": "answered", "data_file": upload})
    assert response.status_code == 302
    assert request is not None
    row = request.partner_data.get(source="email")
    assert b"prets" not in bytes(row.data)  # encrypted at rest


def test_erasure_by_email_then_the_operator_records_a_refusal(
    client: BrowserClient,
    admin_client: BrowserClient,
    dpo_http: BrowserClient,  # noqa: F811
    resident: Any,
    library: PartnerConnector,
    library_client: Any,
    email_connector: PartnerConnector,
) -> None:
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = erasure.erasure_now(user=resident, operator=None)
    assert relay_once(kinds=[erasure.KIND_PARTNER_ERASURE]).delivered == 1
    request = RightsRequest.objects.get(pk=request.pk)
    answer = request.progress["partners"][library_client.client_id]
    # SIP2 cannot ask; the email connector did: the partner's state is "requested".
    assert answer["state"] == "requested"
    assert "library:" in answer["detail"] and "email:" in answer["detail"]
    (email,) = partner_emails()
    assert "effacement" in email.subject and str(request.pk) in email.body
    assert VALID_CARD[0] in email.body  # the card the resident had linked at this library
    RightsRequest.objects.filter(pk=request.pk).update(token_hash=keyed_hash("status-secret"))
    status = page(client, "/compte/suppression/etat/status-secret/")
    assert "demande envoyée par e-mail au délégué à la protection des données du service" in status

    (ask,) = PartnerRightsAsk.objects.filter(kind="erasure")
    response = admin_client.post(f"{ASKS}{ask.pk}/change/", {"answer": "refused", "reason": ""})
    assert response.status_code == 200 and "Indiquez la raison" in html.unescape(response.content.decode())
    response = admin_client.post(
        f"{ASKS}{ask.pk}/change/", {"answer": "refused", "reason": "obligation de conservation des prêts"}
    )
    assert response.status_code == 302
    request = RightsRequest.objects.get(pk=request.pk)
    answer = request.progress["partners"][library_client.client_id]
    assert answer["state"] == "refused" and "obligation de conservation" in answer["detail"]
    assert "le service a refusé l'effacement" in page(client, "/compte/suppression/etat/status-secret/")
    register = page(dpo_http, "/dpo/demandes/")
    assert "effacement refusé par le partenaire" in register and "obligation de conservation" in register
    audit = AuditEvent.objects.get(event="connectors.partner_answer_recorded")
    assert "obligation" not in str(audit.data)


def test_overdue_requests_are_highlighted_for_operators(
    admin_client: BrowserClient, resident: Any, library: PartnerConnector, email_connector: PartnerConnector
) -> None:
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    erasure.erasure_now(user=resident, operator=None)
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    assert "en retard" not in page(admin_client, ASKS)
    PartnerRightsAsk.objects.update(due_at=timezone.now() - timedelta(days=1))
    assert "en retard" in page(admin_client, ASKS)
    (ask,) = PartnerRightsAsk.objects.all()
    assert "en retard : relancez le partenaire" in page(admin_client, f"{ASKS}{ask.pk}/change/")


def test_an_unconfigured_email_connector_fails_the_export_cleanly(
    client: BrowserClient, resident: Any, library: PartnerConnector, library_client: Any, email_connector: Any
) -> None:
    PartnerConnector.objects.filter(pk=email_connector.pk).update(config={})
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = rights_requests.export_request(user=resident).request
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    assert request is not None
    request.refresh_from_db()
    answer = request.progress["partners"][library_client.client_id]
    # The SIP2 data arrived; the email could not be sent: the partner's data is there, and the
    # failure is in the detail for the DPO.
    assert answer["state"] == "answered" and "email: failed" in answer["detail"]
    assert not PartnerRightsAsk.objects.exists()
    open_session(client, resident, ["pwd"])
    assert re.search("le service a transmis ses données", page(client, "/compte/export/"))


def test_staff_without_the_permission_cannot_record(
    make_resident: Any, resident: Any, library: PartnerConnector, email_connector: PartnerConnector
) -> None:
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    erasure.erasure_now(user=resident, operator=None)
    relay_once(kinds=[erasure.KIND_PARTNER_ERASURE])
    (ask,) = PartnerRightsAsk.objects.all()
    clerk = make_resident("clerk@nantesmetropole.fr")
    clerk.is_staff = True
    clerk.save(update_fields=["is_staff"])
    browser = staff_mfa_login(BrowserClient(), clerk)
    assert browser.get(f"{ASKS}{ask.pk}/change/").status_code == 403
    assert browser.post(f"{ASKS}{ask.pk}/change/", {"answer": "erased"}).status_code == 403
    ask.refresh_from_db()
    assert ask.state == "requested"


def test_a_failed_export_asks_no_partner(
    resident: Any, library: PartnerConnector, email_connector: PartnerConnector
) -> None:
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = rights_requests.export_request(user=resident).request
    assert request is not None
    rights_requests.export_fail(request_id=request.pk, reason="test")
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    assert not PartnerRightsAsk.objects.exists() and partner_emails() == []
    request.refresh_from_db()
    assert request.progress["partners"][next(iter(request.progress["partners"]))] == {"state": "requested"}


def test_a_redelivered_partner_message_asks_once(
    resident: Any, library: PartnerConnector, email_connector: PartnerConnector
) -> None:
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = rights_requests.export_request(user=resident).request
    message = OutboxMessage.objects.get(kind=rights_requests.KIND_PARTNER_EXPORT)
    # A worker killed after the partner was asked, before the transaction committed.
    with pytest.raises(RuntimeError), transaction.atomic():
        deliver_partner_export(message)
        raise RuntimeError("worker killed")
    assert not PartnerRightsAsk.objects.exists()
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    message.refresh_from_db()
    deliver_partner_export(message)  # a replay once answered: nothing more
    assert PartnerRightsAsk.objects.count() == 1 and len(partner_emails()) == 1
    assert request is not None and "details" not in message.payload


def test_the_account_erasure_deletes_the_partners_data(
    resident: Any, library: PartnerConnector, email_connector: PartnerConnector
) -> None:
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    request = rights_requests.export_request(user=resident).request
    relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT])
    assert request is not None and request.partner_data.count() == 1  # the SIP2 answer
    erasure.erasure_now(user=resident, operator=None)
    assert request.partner_data.count() == 0
