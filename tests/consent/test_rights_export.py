"""Mon compte › Copie de mes données: the export of GDPR Art. 15 and 20 (issue 11).

Asked from the account with a recent sign-in; the request and its outbox message are
written together; the real outbox handler builds the archive (export.json valid against
docs/export-schema.json, export.html), encrypts it in the database and emails the link;
the link works once, for that resident only, until it expires, and the archive bytes are
deleted after the download or at expiry.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.core import mail
from django.db import transaction
from django.test import Client as BrowserClient
from django.utils import timezone

from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from consent import rights, rights_requests
from consent.models import RightsRequest, RightsRequestState
from consent.rights_requests import KIND_EXPORT, KIND_EXPORT_EXPIRE
from identity.models import AuditEvent
from tests.conftest import MFA_AMR, PASSWORD, deliver_emails, open_session

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "export-schema.json").read_text())
LINK = re.compile(r"https?://[^\s]+/compte/export/telecharger/([^/\s]+)/")
PAGE = "/compte/export/"


def run_exports() -> Any:
    """The real relay, for export messages only (as `manage.py outbox_worker` runs it)."""
    return relay_once(kinds=[KIND_EXPORT])


def ask(user: Any) -> RightsRequest:
    outcome = rights_requests.export_request(user=user)
    assert outcome.created and outcome.request is not None
    return outcome.request


def ready_link(user: Any) -> str:
    """Run the worker and the email delivery; the download link of the email sent to `user`."""
    mail.outbox.clear()
    assert run_exports().delivered == 1
    deliver_emails()
    bodies = [m.body for m in mail.outbox if m.to == [user.email] and LINK.search(m.body)]
    assert len(bodies) == 1, [m.subject for m in mail.outbox]
    match = LINK.search(bodies[0])
    assert match is not None
    return f"/compte/export/telecharger/{match.group(1)}/"


def download(browser: BrowserClient, link: str) -> Any:
    return browser.post(link)


def archive_files(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# --- asking --------------------------------------------------------------------------------


def test_the_page_needs_a_sign_in(db: Any) -> None:
    response = BrowserClient().get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")
    response = BrowserClient().post(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")
    assert not RightsRequest.objects.exists()


def test_asking_needs_a_sign_in_within_ten_minutes(client: BrowserClient, resident: Any) -> None:
    open_session(client, resident, ["pwd"], age=11 * 60)
    assert client.get(PAGE).status_code == 200  # the state may be looked at
    response = client.post(PAGE)
    assert response.status_code == 302
    assert response["Location"] == "/connexion/?next=%2Fcompte%2Fexport%2F"
    assert not RightsRequest.objects.exists()
    assert not OutboxMessage.objects.filter(kind=KIND_EXPORT).exists()


def test_a_resident_without_a_second_factor_enters_the_password_again(
    client: BrowserClient, resident: Any
) -> None:
    open_session(client, resident, ["pwd"], age=11 * 60)
    login = client.post(PAGE, follow=True)
    assert "votre identité en vous reconnectant" in login.content.decode()
    back = client.post("/connexion/?next=/compte/export/", {"username": resident.email, "password": PASSWORD})
    assert back.status_code == 302 and back["Location"] == PAGE
    assert client.post(PAGE).status_code == 302
    assert RightsRequest.objects.filter(user=resident, state=RightsRequestState.WAITING).count() == 1


def test_a_resident_with_a_second_factor_signs_in_with_it_again(
    client: BrowserClient, everything: Any
) -> None:
    open_session(client, everything.user, ["pwd"])  # recent, but without the second factor
    response = client.post(PAGE)
    assert response.status_code == 302 and not RightsRequest.objects.exists()
    open_session(client, everything.user, MFA_AMR)
    assert client.post(PAGE).status_code == 302
    assert RightsRequest.objects.filter(user=everything.user).count() == 1


def test_the_request_writes_the_row_and_its_outbox_message_together(
    client: BrowserClient, resident: Any
) -> None:
    open_session(client, resident, ["pwd"])
    response = client.post(PAGE, follow=True)
    assert response.status_code == 200
    request = RightsRequest.objects.get(user=resident)
    assert request.kind == "export" and request.state == RightsRequestState.WAITING
    assert request.deadline == request.requested_at + timedelta(days=30)
    message = OutboxMessage.objects.get(kind=KIND_EXPORT)
    assert message.payload == {"request_id": str(request.pk)}
    assert AuditEvent.objects.filter(event="rights.export_requested", subject_user_id=resident.pk).exists()
    assert "Votre demande est enregistrée" in response.content.decode()
    assert "en attente" in response.content.decode()


def test_no_row_without_its_outbox_message(resident: Any, monkeypatch: Any) -> None:
    def broken_queue(**kwargs: Any) -> None:
        raise RuntimeError("the outbox is down")

    monkeypatch.setattr(rights_requests, "_queue", broken_queue)
    with pytest.raises(RuntimeError):
        rights_requests.export_request(user=resident)
    assert not RightsRequest.objects.exists()
    assert not AuditEvent.objects.filter(event="rights.export_requested").exists()


def test_a_second_request_while_one_is_open_returns_it(client: BrowserClient, resident: Any) -> None:
    open_session(client, resident, ["pwd"])
    client.post(PAGE)
    response = client.post(PAGE, follow=True)
    assert RightsRequest.objects.filter(user=resident).count() == 1
    assert OutboxMessage.objects.filter(kind=KIND_EXPORT).count() == 1
    assert "déjà en préparation" in response.content.decode()


def test_requests_are_limited_per_day(client: BrowserClient, resident: Any, settings: Any) -> None:
    settings.RIGHTS_EXPORT_MAX_PER_DAY = 2
    for _ in range(2):
        ask(resident)
        run_exports()
    open_session(client, resident, ["pwd"])
    response = client.post(PAGE, follow=True)
    assert "Réessayez demain" in response.content.decode()
    assert RightsRequest.objects.filter(user=resident).count() == 2


def test_the_form_is_csrf_protected(resident: Any) -> None:
    browser = open_session(BrowserClient(enforce_csrf_checks=True), resident, ["pwd"])
    assert browser.post(PAGE).status_code == 403
    assert not RightsRequest.objects.exists()


# --- the worker ------------------------------------------------------------------------------


def test_the_worker_builds_the_archive_and_emails_the_link(everything: Any) -> None:
    resident = everything.user
    request = ask(resident)
    link = ready_link(resident)
    request.refresh_from_db()
    assert request.state == RightsRequestState.DONE
    assert request.started_at and request.completed_at and request.expires_at
    assert request.expires_at - request.completed_at == timedelta(days=7)
    assert set(request.progress["providers"]) == {p.name for p in rights.providers()}
    stored = bytes(request.archive)
    assert stored and not stored.startswith(b"PK")  # encrypted at rest, not the zip itself
    assert request.token_hash and link.split("/")[-2] not in request.token_hash

    browser = open_session(BrowserClient(), resident, MFA_AMR)
    page = browser.get(link)
    assert page.status_code == 200 and "Télécharger (fichier ZIP)" in page.content.decode()
    response = download(browser, link)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip" and "no-store" in response["Cache-Control"]
    files = archive_files(response.content)
    assert set(files) == {"export.json", "export.html"}

    exported = json.loads(files["export.json"])
    jsonschema.validate(exported, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert exported["version"] == rights.EXPORT_VERSION and exported["user_id"] == str(resident.pk)
    sections = exported["sections"]
    assert sections["identity"]["account"]["email"] == resident.email
    assert sections["identity"]["sessions"]
    assert [factor["name"] for factor in sections["mfa"]["totp"]] == ["Téléphone"]
    notes = [event["details"] for event in sections["consent"]["ledger_events"] if event["details"]]
    assert {"note": "inscrite au salon"} in notes
    assert [row["id"] for row in sections["consent"]["rights_requests"]] == [str(request.pk)]

    html = files["export.html"].decode()
    assert '<html lang="fr">' in html and "Vos consentements" in html and "inscrite au salon" in html
    assert resident.email in html

    request.refresh_from_db()
    everything.secrets["download token hash"] = request.token_hash
    everything.secrets["download link secret"] = link.split("/")[-2]
    text = files["export.json"].decode() + html
    for what, secret in everything.secrets.items():
        assert secret and secret not in text, f"the archive holds the {what}"


def test_the_archive_is_in_the_residents_language(resident: Any) -> None:
    type(resident).objects.filter(pk=resident.pk).update(preferred_language="en")
    resident.refresh_from_db()
    ask(resident)
    link = ready_link(resident)
    assert mail.outbox[-1].subject == "Your copy of your data is ready"
    browser = open_session(BrowserClient(), resident, ["pwd"])
    html = archive_files(download(browser, link).content)["export.html"].decode()
    assert '<html lang="en">' in html and "Your consents" in html
    assert "password set" in html and "mot de passe" not in html


def test_the_link_works_once_then_the_archive_is_gone(resident: Any) -> None:
    request = ask(resident)
    link = ready_link(resident)
    browser = open_session(BrowserClient(), resident, ["pwd"])
    assert download(browser, link).status_code == 200
    request.refresh_from_db()
    assert request.downloaded_at is not None and request.archive is None
    again = download(browser, link)
    assert again.status_code == 410 and "déjà été téléchargée" in again.content.decode()
    assert browser.get(link).status_code == 410
    assert "Vous avez téléchargé cette copie" in browser.get(PAGE).content.decode()
    downloads = AuditEvent.objects.filter(event="rights.export_downloaded", subject_user_id=resident.pk)
    assert downloads.count() == 1


def test_another_resident_gets_a_404(resident: Any, make_resident: Any) -> None:
    ask(resident)
    link = ready_link(resident)
    other = open_session(BrowserClient(), make_resident("dominique@example.org"), ["pwd"])
    assert other.get(link).status_code == 404
    assert download(other, link).status_code == 404
    assert BrowserClient().post(link).status_code == 302  # not signed in: the sign-in page
    owner = open_session(BrowserClient(), resident, ["pwd"])
    assert owner.get(link.replace("telecharger/", "telecharger/x")).status_code == 404
    assert download(owner, link).status_code == 200


def test_an_expired_link_fails_and_the_archive_is_deleted(resident: Any) -> None:
    request = ask(resident)
    link = ready_link(resident)
    RightsRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    browser = open_session(BrowserClient(), resident, ["pwd"])
    response = download(browser, link)
    assert response.status_code == 410 and "expiré" in response.content.decode()
    request.refresh_from_db()
    assert request.archive is None and request.downloaded_at is None


def test_an_archive_that_no_longer_decrypts_is_refused_without_an_error(resident: Any) -> None:
    request = ask(resident)
    link = ready_link(resident)
    RightsRequest.objects.filter(pk=request.pk).update(archive=b"\x00" * 64)  # e.g. key rotated
    response = download(open_session(BrowserClient(), resident, ["pwd"]), link)
    assert response.status_code == 410
    request.refresh_from_db()
    assert request.archive is None


def test_the_worker_deletes_the_archive_when_the_link_expires(resident: Any) -> None:
    request = ask(resident)
    ready_link(resident)
    expiry = OutboxMessage.objects.get(kind=KIND_EXPORT_EXPIRE)
    request.refresh_from_db()
    assert expiry.next_attempt_at == request.expires_at
    assert relay_once(kinds=[KIND_EXPORT_EXPIRE]).processed == 0  # not due yet
    past = timezone.now() - timedelta(seconds=1)
    RightsRequest.objects.filter(pk=request.pk).update(expires_at=past)
    OutboxMessage.objects.filter(pk=expiry.pk).update(next_attempt_at=past)
    assert relay_once(kinds=[KIND_EXPORT_EXPIRE]).delivered == 1
    request.refresh_from_db()
    assert request.archive is None


def test_a_failure_marks_the_request_failed_and_the_page_says_so(
    client: BrowserClient, resident: Any, monkeypatch: Any
) -> None:
    request = ask(resident)

    def broken(user: Any) -> Any:
        raise ValueError("a provider broke")

    monkeypatch.setattr(rights_requests, "rights_export", broken)
    result = run_exports()
    assert result.dead == 1
    request.refresh_from_db()
    assert request.state == RightsRequestState.FAILED and request.archive is None
    assert OutboxMessage.objects.get(kind=KIND_EXPORT).status == OutboxMessage.Status.DEAD
    open_session(client, resident, ["pwd"])
    page = client.get(PAGE).content.decode()
    assert "échec" in page and "a échoué" in page
    # The resident may ask again at once.
    monkeypatch.undo()
    assert client.post(PAGE).status_code == 302
    assert RightsRequest.objects.filter(user=resident, state=RightsRequestState.WAITING).count() == 1


def test_a_repeated_delivery_does_nothing(resident: Any) -> None:
    request = ask(resident)
    run_exports()
    request.refresh_from_db()
    token_hash = request.token_hash
    rights_requests.export_build(request_id=request.pk)
    request.refresh_from_db()
    assert request.token_hash == token_hash


def test_the_page_shows_the_state_of_the_request(client: BrowserClient, resident: Any) -> None:
    open_session(client, resident, ["pwd"])
    assert "Demander une copie de mes données" in client.get(PAGE).content.decode()
    request = ask(resident)
    RightsRequest.objects.filter(pk=request.pk).update(state=RightsRequestState.RUNNING)
    page = client.get(PAGE).content.decode()
    assert "en cours de préparation" in page and "Demander une copie de mes données" not in page
    RightsRequest.objects.filter(pk=request.pk).update(state=RightsRequestState.WAITING)
    run_exports()
    page = client.get(PAGE).content.decode()
    assert "prête" in page and resident.email in page


def test_erasure_deletes_the_archive_and_keeps_the_record(resident: Any) -> None:
    request = ask(resident)
    run_exports()
    with transaction.atomic():
        rights.rights_erase(resident)
    request.refresh_from_db()
    assert request.user is None and request.archive is None and request.token_hash == ""
    assert request.state == RightsRequestState.DONE


def test_the_account_summary_links_to_the_export_and_says_its_state(
    client: BrowserClient, resident: Any
) -> None:
    open_session(client, resident, ["pwd"])
    html = client.get("/compte/").content.decode()
    assert 'href="/compte/export/"' in html and "Recevoir une copie de toutes mes données" in html
    assert "Vous n&#x27;avez pas encore demandé de copie de vos données." in html
    ask(resident)
    assert "est en préparation" in client.get("/compte/").content.decode()
    run_exports()
    assert "est prête" in client.get("/compte/").content.decode()


# --- a real worker process -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_process_builds_the_archive(
    client: BrowserClient, make_resident: Any, run_worker: Any
) -> None:
    resident = make_resident("sacha@example.org")
    open_session(client, resident, ["pwd"])
    assert client.post(PAGE).status_code == 302
    request = RightsRequest.objects.get(user=resident)
    run_worker("--once")  # builds the archive, queues the email
    run_worker("--once")  # sends the email
    request.refresh_from_db()
    assert request.state == RightsRequestState.DONE and request.archive
    # The "ready" email was sent by the worker (its sealed payload blanked once delivered).
    assert OutboxMessage.objects.filter(kind="email", status=OutboxMessage.Status.DELIVERED).count() == 1
    assert OutboxMessage.objects.get(kind=KIND_EXPORT).status == OutboxMessage.Status.DELIVERED
    assert "prête" in client.get(PAGE).content.decode()
