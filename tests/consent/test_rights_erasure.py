"""Erasure of an account (GDPR Art. 17 and 19): Mon compte › Supprimer mon compte, the grace
period, cancelling, the worker's run, the status page, the admin's delete and the inactive
accounts (consent/erasure.py, consent/views_erasure.py, connectors/rights_erasure.py)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client as BrowserClient
from django.utils import timezone

from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from connectors.services import outbox_replay
from consent import crypto, erasure
from consent import rights as rights_registry
from consent.models import LedgerEvent, RightsRequest, RightsRequestState, Subject
from consent.selectors import event_details, ledger_verify
from consent.services import consent_record
from identity.models import AuditEvent, BrowserSession, User
from identity.oidc.backchannel import KIND as BACKCHANNEL
from identity.oidc.models import AccessToken, RefreshToken
from tests.conftest import PASSWORD, OIDCFlow, deliver_emails, open_session
from tests.oidc.conftest import complete_flow

PAGE = "/compte/supprimer/"
CANCEL = "/compte/supprimer/annuler/"
CANCEL_LINK = re.compile(r"https?://\S+(/compte/suppression/annuler/[^/\s]+/)")
STATUS_LINK = re.compile(r"https?://\S+(/compte/suppression/etat/[^/\s]+/)")
KINDS = [erasure.KIND_ERASURE, erasure.KIND_PARTNER_ERASURE]


def fresh(client: BrowserClient, user: Any) -> BrowserClient:
    """Signed in with the password just now (an account without a factor: a recent sign-in)."""
    return open_session(client, user, ("pwd",))


def ask(client: BrowserClient) -> Any:
    response = client.post(PAGE, {"confirm": "yes"})
    assert response.status_code == 302 and response["Location"] == PAGE
    return response


def links() -> tuple[str, str]:
    deliver_emails()
    body = mail.outbox[-1].body
    cancel, status = CANCEL_LINK.search(body), STATUS_LINK.search(body)
    assert cancel and status, body
    return cancel.group(1), status.group(1)


def due_now(request: RightsRequest) -> None:
    """Move time: the grace period is over."""
    past = timezone.now() - timedelta(seconds=1)
    RightsRequest.objects.filter(pk=request.pk).update(not_before=past)
    OutboxMessage.objects.filter(kind=erasure.KIND_ERASURE).update(next_attempt_at=past)


def run_relay() -> None:
    while relay_once(kinds=KINDS).processed:
        pass


# --- the page ----------------------------------------------------------------------------------


def test_page_needs_sign_in(client: BrowserClient, db: Any) -> None:
    response = client.get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")


def test_page_explains_what_is_deleted_and_kept(client: BrowserClient, resident: Any) -> None:
    html = fresh(client, resident).get(PAGE).content.decode()
    assert "Ce qui sera supprimé" in html and "Ce que la loi nous oblige à garder" in html
    assert "7 jours" in html
    assert not RightsRequest.objects.exists()


def test_request_needs_a_recent_sign_in(client: BrowserClient, resident: Any) -> None:
    open_session(client, resident, ("pwd",), age=3600)
    response = client.post(PAGE, {"confirm": "yes"})
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")
    assert not RightsRequest.objects.exists()
    assert not OutboxMessage.objects.filter(kind=erasure.KIND_ERASURE).exists()


def test_request_writes_the_row_the_scheduled_message_and_the_email(
    client: BrowserClient, resident: Any, settings: Any
) -> None:
    settings.ERASURE_GRACE_DAYS = 7
    before = timezone.now()
    ask(fresh(client, resident))

    request = RightsRequest.objects.get(user=resident)
    assert request.kind == "erasure" and request.state == RightsRequestState.WAITING
    assert before + timedelta(days=7) <= request.not_before <= timezone.now() + timedelta(days=7)
    message = OutboxMessage.objects.get(kind=erasure.KIND_ERASURE)
    assert message.next_attempt_at == request.not_before
    assert message.payload == {"request_id": str(request.pk)}
    assert AuditEvent.objects.filter(event="rights.erasure_requested", subject_user_id=resident.pk).exists()
    # The account keeps working during the grace period.
    assert User.objects.filter(pk=resident.pk, is_active=True).exists()
    assert client.get("/compte/").status_code == 200

    cancel, status = links()
    assert mail.outbox[-1].to == [resident.email]
    # Only keyed hashes are stored, never the links' secrets.
    assert cancel.split("/")[-2] not in request.cancel_token_hash
    assert status.split("/")[-2] not in request.token_hash
    html = client.get(PAGE).content.decode()
    assert "Suppression demandée" in html and CANCEL in html

    # Not due yet: the relay leaves it alone; delivered early anyway (a replay), it is put
    # back for the end of the grace period.
    run_relay()
    assert User.objects.filter(pk=resident.pk).exists()
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    run_relay()
    assert User.objects.filter(pk=resident.pk).exists()
    again = OutboxMessage.objects.filter(kind=erasure.KIND_ERASURE, status="pending").get()
    assert again.pk != message.pk and again.next_attempt_at == request.not_before


def test_a_second_request_is_refused(client: BrowserClient, resident: Any) -> None:
    ask(fresh(client, resident))
    ask(client)
    assert RightsRequest.objects.filter(user=resident).count() == 1
    with pytest.raises(erasure.ErasureError):
        erasure.erasure_request(user=resident)
    assert OutboxMessage.objects.filter(kind=erasure.KIND_ERASURE).count() == 1


def test_cancel_with_the_button(client: BrowserClient, resident: Any) -> None:
    ask(fresh(client, resident))
    response = client.post(CANCEL)
    assert response.status_code == 302
    request = RightsRequest.objects.get(user=resident)
    assert request.state == RightsRequestState.CANCELLED
    assert AuditEvent.objects.filter(event="rights.erasure_cancelled").exists()

    due_now(request)
    run_relay()  # the message comes: a cancelled request never erases
    assert User.objects.filter(pk=resident.pk).exists()
    assert RightsRequest.objects.get(pk=request.pk).state == RightsRequestState.CANCELLED


def test_cancel_with_the_email_link_once(client: BrowserClient, resident: Any) -> None:
    ask(fresh(client, resident))
    cancel, _status = links()
    anonymous = BrowserClient()
    page = anonymous.get(cancel)
    assert page.status_code == 200 and "Annuler la suppression" in page.content.decode()
    assert (
        RightsRequest.objects.get(user=resident).state == RightsRequestState.WAITING
    )  # a GET changes nothing
    assert anonymous.post(cancel).status_code == 200
    assert RightsRequest.objects.get(user=resident).state == RightsRequestState.CANCELLED
    assert anonymous.post(cancel).status_code == 410  # single use
    assert anonymous.get("/compte/suppression/annuler/not-a-token/").status_code == 410


def test_sign_in_shows_the_pending_deletion(client: BrowserClient, resident: Any) -> None:
    ask(fresh(client, resident))
    browser = BrowserClient()
    response = browser.post("/connexion/", {"username": resident.email, "password": PASSWORD}, follow=True)
    html = response.content.decode()
    assert "La suppression de votre compte est prévue le" in html
    assert f'action="{CANCEL}"' in html  # the cancel button, right there
    assert browser.post(CANCEL).status_code == 302
    assert RightsRequest.objects.get(user=resident).state == RightsRequestState.CANCELLED
    ask(fresh(browser, resident))
    summary = browser.get("/compte/").content.decode()
    assert "Vous pouvez encore l&#x27;annuler" in summary and PAGE in summary


# --- the run -----------------------------------------------------------------------------------


def test_the_worker_erases_at_the_end_of_the_grace_period(
    client: BrowserClient, resident: Any, make_client: Any, ledger_ready: Any
) -> None:
    partner = make_client(name="Médiathèques", backchannel_logout_uri="https://rp.example.org/bcl")
    complete_flow(OIDCFlow(fresh(client, resident), partner))
    assert AccessToken.objects.filter(user=resident).exists()
    event = consent_record(
        user=resident,
        purpose_code="service-news-email",
        event_type="given",
        collection_method="web_form",
        details={"why": "x"},
    )
    ask(client)
    _cancel, status = links()
    request = RightsRequest.objects.get(user=resident)
    due_now(request)

    relay_once(kinds=[erasure.KIND_ERASURE])

    request.refresh_from_db()
    assert request.state == RightsRequestState.DONE and request.user_id is None
    assert not User.objects.filter(pk=resident.pk).exists()
    assert not BrowserSession.objects.filter(user_id=resident.pk).exists()
    assert not AccessToken.objects.filter(user_id=resident.pk).exists()
    assert not RefreshToken.objects.filter(user_id=resident.pk).exists()
    assert OutboxMessage.objects.filter(kind=BACKCHANNEL, partner=partner.client_id).exists()
    subject = Subject.objects.get(pk=event.subject_id)
    assert subject.wrapped_key is None and subject.key_destroyed_at is not None
    with pytest.raises(crypto.KeyDestroyed):
        event_details(LedgerEvent.objects.get(pk=event.pk))
    assert ledger_verify().ok
    names = [step["name"] for step in request.progress["steps"]]
    assert names == [
        "oidc",
        "mfa",
        "franceconnect",
        "connectors",
        "connectors_scim",
        "profiles",
        "consent",
        "identity",
    ]
    assert all(step["state"] == "done" for step in request.progress["steps"])
    assert request.progress["partners"] == {partner.client_id: {"state": erasure.PARTNER_REQUESTED}}
    assert AuditEvent.objects.filter(event="rights.erasure_done").exists()

    run_relay()  # the partner's erasure request: no connector, recorded honestly
    request.refresh_from_db()
    assert request.progress["partners"][partner.client_id]["state"] == erasure.PARTNER_NO_CONNECTOR

    html = BrowserClient().get(status).content.decode()
    assert "terminée" in html and partner.client.name in html and "consent" in html
    assert resident.email not in html

    # The email address can open a new account.
    response = BrowserClient().post(
        "/inscription/",
        {"email": resident.email, "given_name": "Alex", "family_name": "Durand", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert User.objects.filter(email=resident.email).exclude(pk=resident.pk).exists()


def test_a_failing_provider_erases_nothing_and_marks_the_request_failed(
    client: BrowserClient, resident: Any, monkeypatch: Any
) -> None:
    ask(fresh(client, resident))
    request = RightsRequest.objects.get(user=resident)
    due_now(request)

    def broken(user: Any) -> Any:
        raise RuntimeError("disk on fire")

    original = next(p for p in rights_registry.providers() if p.name == "mfa")
    rights_registry.register_provider(
        "mfa", export=original.export, erase=broken, models=original.models, order=original.order
    )
    try:
        relay_once(kinds=[erasure.KIND_ERASURE])
    finally:
        rights_registry.register_provider(
            original.name,
            export=original.export,
            erase=original.erase,
            models=original.models,
            order=original.order,
        )
    request.refresh_from_db()
    assert request.state == RightsRequestState.FAILED
    assert User.objects.filter(pk=resident.pk).exists()
    assert BrowserSession.objects.filter(user=resident, ended_at__isnull=True).exists()  # rolled back
    assert not OutboxMessage.objects.filter(kind=erasure.KIND_PARTNER_ERASURE).exists()
    assert OutboxMessage.objects.get(kind=erasure.KIND_ERASURE).status == OutboxMessage.Status.DEAD
    assert AuditEvent.objects.filter(event="rights.erasure_failed").exists()

    # The cause fixed, the operator replays the dead-lettered message: the erasure runs.
    outbox_replay(message_id=OutboxMessage.objects.get(kind=erasure.KIND_ERASURE).pk)
    relay_once(kinds=[erasure.KIND_ERASURE])
    assert RightsRequest.objects.get(pk=request.pk).state == RightsRequestState.DONE
    assert not User.objects.filter(pk=resident.pk).exists()


def test_status_page_unknown_token(db: Any) -> None:
    assert BrowserClient().get("/compte/suppression/etat/nope/").status_code == 404


# --- the admin ---------------------------------------------------------------------------------


def test_admin_delete_goes_through_the_erasure(admin_client: BrowserClient, make_resident: Any) -> None:
    victim = make_resident()
    open_session(BrowserClient(), victim, ("pwd",))
    response = admin_client.post(f"/admin/identity/user/{victim.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=victim.pk).exists()
    request = RightsRequest.objects.get(origin="operator")
    assert request.state == RightsRequestState.DONE and request.user_id is None
    assert AuditEvent.objects.filter(event="rights.erasure_by_operator", subject_user_id=victim.pk).exists()
    assert AuditEvent.objects.filter(event="account.erased", subject_user_id=victim.pk).exists()
    assert AuditEvent.objects.filter(event="session.ended", subject_user_id=victim.pk).exists()
    assert not BrowserSession.objects.filter(user_id=victim.pk).exists()


def test_admin_bulk_delete_goes_through_the_erasure(admin_client: BrowserClient, make_resident: Any) -> None:
    victims = [make_resident(), make_resident()]
    response = admin_client.post(
        "/admin/identity/user/",
        {"action": "delete_selected", "_selected_action": [str(v.pk) for v in victims], "post": "yes"},
    )
    assert response.status_code == 302
    assert not User.objects.filter(pk__in=[v.pk for v in victims]).exists()
    assert RightsRequest.objects.filter(origin="operator", state=RightsRequestState.DONE).count() == 2


# --- inactive accounts -------------------------------------------------------------------------


def test_inactive_accounts_are_warned_then_requested(make_resident: Any, settings: Any) -> None:
    settings.ERASURE_INACTIVE_AFTER_DAYS = 1095
    settings.ERASURE_INACTIVE_WARNING_DAYS = 30
    old = make_resident()
    User.objects.filter(pk=old.pk).update(last_login=timezone.now() - timedelta(days=1080))
    recent = make_resident()
    User.objects.filter(pk=recent.pk).update(last_login=timezone.now() - timedelta(days=10))

    call_command("erase_inactive_accounts", "--dry-run")
    assert not AuditEvent.objects.filter(event=erasure.EVENT_INACTIVE_WARNED).exists()
    assert not OutboxMessage.objects.exists()

    call_command("erase_inactive_accounts")
    warned = AuditEvent.objects.filter(event=erasure.EVENT_INACTIVE_WARNED)
    assert list(warned.values_list("subject_user_id", flat=True)) == [old.pk]
    deliver_emails()
    assert mail.outbox[-1].to == [old.email]
    call_command("erase_inactive_accounts")  # idempotent
    assert warned.count() == 1 and not RightsRequest.objects.exists()

    # 30 days later, still no sign-in.
    later = timezone.now() + timedelta(days=31)
    outcome = erasure.inactive_accounts_process(dry_run=True, now=later)
    assert outcome.requested == [str(old.pk)] and not RightsRequest.objects.exists()
    erasure.inactive_accounts_process(now=later)
    request = RightsRequest.objects.get(user=old)
    assert request.origin == "inactivity" and request.state == RightsRequestState.WAITING
    erasure.inactive_accounts_process(now=later)
    assert RightsRequest.objects.count() == 1


def test_signing_in_after_the_warning_keeps_the_account(make_resident: Any) -> None:
    old = make_resident()
    User.objects.filter(pk=old.pk).update(last_login=timezone.now() - timedelta(days=1080))
    call_command("erase_inactive_accounts")
    User.objects.filter(pk=old.pk).update(last_login=timezone.now())
    assert erasure.inactive_accounts_process(now=timezone.now() + timedelta(days=31)).requested == []
