"""SCIM provisioning against a partner's SCIM service (the scim2-server package on a real
socket, connectors/scim_simulator.py), driven by the resident's real decisions: the consent
screen of an authorization flow, Mon compte › Informations personnelles, Mon compte ›
Services connectés, and the account's erasure. Deliveries go through the outbox relay."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import jsonschema
import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from connectors.models import OutboxMessage, ScimAccount
from connectors.outbox import relay_once
from connectors.rights_erasure import deliver_partner_erasure
from connectors.scim_provisioning import KIND_SYNC, deliver_scim_sync
from consent import erasure, rights_requests
from consent.export_archive import html_sections
from consent.models import RightsPartnerData, RightsRequest
from consent.rights import rights_export
from consent.services import consent_record
from identity.models import AuditEvent
from identity.oidc.sharing import sharing_purpose_code, sharing_withdraw
from identity.services import PostalAddress, profile_update
from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import complete_flow, is_consent_page

pytestmark = pytest.mark.django_db

SCOPE = "openid profile email"
EXPORT_SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "export-schema.json").read_text())


def _sync() -> object:
    return relay_once(kinds=[KIND_SYNC])


def _granted(signed_in, scim_client, scope=SCOPE) -> str:
    """The resident allows the partner on the consent screen; the `sub` of its ID token."""
    flow = OIDCFlow(signed_in, scim_client)
    assert is_consent_page(flow.authorize(scope=scope))
    tokens = complete_flow(flow, scope=scope)
    return str(verify_id_token(tokens["id_token"], scim_client.client_id)["sub"])


def test_consent_provisions_the_resident_with_the_partner_s_sub(
    signed_in, resident, scim, scim_sim, scim_client
):
    sub = _granted(signed_in, scim_client)
    message = OutboxMessage.objects.get(kind=KIND_SYNC)
    assert message.partner == scim_client.client_id and message.max_attempts == 3
    assert set(message.payload) == {"connector", "user", "reason"}  # ids only, never the details
    assert _sync().delivered == 1
    (user,) = scim_sim.users()
    assert user["externalId"] == sub and user["userName"] == sub
    assert sub != str(resident.pk)  # pairwise, not the account id
    assert user["name"] == {"givenName": "Camille", "familyName": "Martin", "formatted": "Camille Martin"}
    assert user["emails"] == [{"value": resident.email, "type": "home", "primary": True}]
    assert user["active"] is True
    account = ScimAccount.objects.get(user=resident, connector=scim)
    assert account.scim_id == user["id"] and account.active and account.last_action == "created"
    assert AuditEvent.objects.filter(event="connector.scim_synced", data__action="created").count() == 1


def test_only_what_the_resident_shares_is_sent(signed_in, resident, scim, scim_sim, scim_client):
    _granted(signed_in, scim_client, scope="openid profile")
    _sync()
    (user,) = scim_sim.users()
    assert "emails" not in user and resident.email not in str(user)
    assert user["name"]["givenName"] == "Camille"


def test_nothing_is_provisioned_without_consent(signed_in, resident, scim, scim_sim, scim_client):
    flow = OIDCFlow(signed_in, scim_client)
    page = flow.authorize(scope=SCOPE)
    response = signed_in.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    assert "code=" not in response.get("Location", "")
    assert not OutboxMessage.objects.filter(kind=KIND_SYNC).exists()
    assert _sync().processed == 0
    assert scim_sim.users() == [] and scim_sim.counts["POST /Users"] == 0


def test_a_change_of_name_is_patched_at_the_partner(signed_in, resident, scim, scim_sim, scim_client):
    _granted(signed_in, scim_client)
    _sync()
    profile_update(
        user=resident,
        given_name="Zoé",
        family_name="Martin",
        phone_number="",
        address=PostalAddress(street_address="2 rue de Strasbourg", locality="Nantes", postal_code="44000"),
    )
    message = OutboxMessage.objects.filter(kind=KIND_SYNC, payload__reason="changed").get()
    assert message.status == OutboxMessage.Status.PENDING
    assert _sync().delivered == 1
    (user,) = scim_sim.users()
    assert user["name"]["givenName"] == "Zoé" and user["active"] is True
    assert "addresses" not in user  # the address scope was not granted
    assert scim_sim.counts["POST /Users"] == 1 and scim_sim.counts[f"PATCH /Users/{user['id']}"] == 1
    # Conditional on the version just read (the partner advertises ETags), with our key.
    assert scim_sim.counts["If-Match"] == 1
    assert message.idempotency_key in scim_sim.idempotency_keys


def test_a_change_the_partner_does_not_hold_queues_nothing(signed_in, resident, scim, scim_client):
    _granted(signed_in, scim_client)
    _sync()
    profile_update(
        user=resident, given_name="Camille", family_name="Martin", phone_number="", address=PostalAddress()
    )  # nothing changed
    assert OutboxMessage.objects.filter(kind=KIND_SYNC).count() == 1


def test_withdrawal_deactivates_and_a_new_consent_reactivates(
    signed_in, resident, scim, scim_sim, scim_client
):
    _granted(signed_in, scim_client)
    _sync()
    response = signed_in.post(f"/compte/services/{scim_client.client_id}/retirer/")
    assert response.status_code in {200, 302, 303}
    assert _sync().delivered == 1
    (user,) = scim_sim.users()
    assert user["active"] is False
    assert ScimAccount.objects.get(user=resident).active is False
    _granted(signed_in, scim_client)
    _sync()
    (user,) = scim_sim.users()
    assert user["active"] is True and scim_sim.counts["POST /Users"] == 1


def test_a_late_grant_after_a_withdrawal_does_not_reactivate(
    signed_in, resident, scim, scim_sim, scim_client
):
    _granted(signed_in, scim_client)
    _sync()
    sharing_withdraw(user=resident, client=scim_client.client)
    grant, _withdrawal = OutboxMessage.objects.filter(kind=KIND_SYNC).order_by("created_at")
    _sync()
    deliver_scim_sync(grant)  # the grant's message delivered again, after the withdrawal
    (user,) = scim_sim.users()
    assert user["active"] is False


def test_redelivery_creates_no_second_user(signed_in, resident, scim, scim_sim, scim_client):
    _granted(signed_in, scim_client)
    message = OutboxMessage.objects.get(kind=KIND_SYNC)
    # A worker dies after the partner created the user, before the delivery was recorded.
    with pytest.raises(RuntimeError), transaction.atomic():
        deliver_scim_sync(message)
        raise RuntimeError("worker killed")
    assert not ScimAccount.objects.exists() and len(scim_sim.users()) == 1
    assert _sync().delivered == 1
    deliver_scim_sync(message)  # and once more (a replay)
    assert len(scim_sim.users()) == 1 and scim_sim.counts["POST /Users"] == 1
    user = scim_sim.users()[0]
    assert ScimAccount.objects.get().scim_id == user["id"]
    assert scim_sim.counts[f"PATCH /Users/{user['id']}"] == 0  # already up to date: nothing written
    assert user["meta"]["version"] == 'W/"1"'


def test_the_export_lists_our_record_and_asks_the_partner(signed_in, resident, scim, scim_sim, scim_client):
    sub = _granted(signed_in, scim_client)
    _sync()
    export = rights_export(resident)
    jsonschema.Draft202012Validator(EXPORT_SCHEMA).validate(json.loads(json.dumps(export)))
    (entry,) = export["sections"]["connectors_scim"]["accounts"]
    section = next(item for item in html_sections(export) if item["name"] == "connectors_scim")
    assert section["title"] == "Les comptes créés pour vous chez des partenaires"
    assert entry["partner"] == scim_client.client_id and entry["active"] is True
    assert entry["scim_id"] == scim_sim.users()[0]["id"]
    # The partner is asked through the outbox like every partner: down, then back.
    outcome = rights_requests.export_request(user=resident)
    assert outcome.request is not None
    (message,) = OutboxMessage.objects.filter(kind=rights_requests.KIND_PARTNER_EXPORT)
    assert message.partner == scim_client.client_id and message.payload["details"]["subject"] == sub
    scim_sim.go_down()
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).retried == 1
    scim_sim.recover()
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert relay_once(kinds=[rights_requests.KIND_PARTNER_EXPORT]).delivered == 1
    request = RightsRequest.objects.get(pk=outcome.request.pk)
    assert request.progress["partners"][scim_client.client_id]["state"] == "answered"
    assert RightsPartnerData.objects.filter(request=request, client_id=scim_client.client_id).exists()


def test_the_erasure_deletes_the_partner_s_user_by_its_sub(signed_in, resident, scim, scim_sim, scim_client):
    sub = _granted(signed_in, scim_client)
    _sync()
    request = erasure.erasure_now(user=resident, operator=None)
    assert not ScimAccount.objects.exists()
    message = OutboxMessage.objects.get(kind=erasure.KIND_PARTNER_ERASURE, partner=scim_client.client_id)
    assert message.payload["details"]["subject"] == sub
    assert relay_once(kinds=[erasure.KIND_PARTNER_ERASURE]).delivered == 1
    assert scim_sim.users() == []
    deletes = sum(count for key, count in scim_sim.counts.items() if key.startswith("DELETE "))
    assert deletes == 1
    answer = RightsRequest.objects.get(pk=request.pk).progress["partners"][scim_client.client_id]
    assert answer["state"] == "erased" and "deleted" in answer["detail"]
    # Delivered again (answered already): nothing more asked.
    message.refresh_from_db()
    deliver_partner_erasure(message)
    assert sum(count for key, count in scim_sim.counts.items() if key.startswith("DELETE ")) == deletes


def test_a_pending_provisioning_of_an_erased_account_provisions_nothing(
    signed_in, resident, scim, scim_sim, scim_client
):
    _granted(signed_in, scim_client)
    erasure.erasure_now(user=resident, operator=None)
    assert _sync().delivered == 1
    assert scim_sim.users() == []


def test_the_cards_page_offers_no_scim_link(signed_in, scim):
    """Residents link no account at a SCIM partner: it is provisioned from their consent."""
    page = signed_in.get("/compte/cartes/")
    assert page.status_code == 200
    assert scim.label not in page.content.decode()


def test_a_user_the_partner_deleted_is_created_again_at_the_next_change(
    signed_in, resident, scim, scim_sim, scim_client
):
    sub = _granted(signed_in, scim_client)
    _sync()
    (first,) = scim_sim.users()
    scim_sim.storage.resources = []  # the partner lost or deleted it
    profile_update(
        user=resident, given_name="Zoé", family_name="Martin", phone_number="", address=PostalAddress()
    )
    assert _sync().delivered == 1
    (user,) = scim_sim.users()
    assert user["externalId"] == sub and user["id"] != first["id"] and user["name"]["givenName"] == "Zoé"
    assert ScimAccount.objects.get(user=resident).scim_id == user["id"]


def test_reconcile_deactivates_after_a_withdrawal_recorded_elsewhere(
    signed_in, resident, scim, scim_sim, scim_client
):
    """A withdrawal that does not go through Services connectés (staff recording it, a consent
    lapsing) queues nothing; the daily `scim_reconcile` makes the partner follow."""
    _granted(signed_in, scim_client)
    _sync()
    with transaction.atomic():
        consent_record(
            user=resident,
            purpose_code=sharing_purpose_code(scim_client.client, SCOPE.split()),
            event_type="withdrawn",
            collection_method="web_form",
        )
    assert _sync().processed == 0
    assert scim_sim.users()[0]["active"] is True
    out = StringIO()
    call_command("scim_reconcile", "--run", "day-1", stdout=out)
    call_command("scim_reconcile", "--run", "day-1", stdout=StringIO())  # the same run queues once
    assert "1 SCIM update(s) queued" in out.getvalue()
    assert _sync().delivered == 1
    assert scim_sim.users()[0]["active"] is False
    assert ScimAccount.objects.get(user=resident).active is False
    call_command("scim_reconcile", "--run", "day-2", stdout=out)  # inactive: not queued again
    assert _sync().processed == 0
