"""Finding 7: production must deliver email for real, and never inside the request.

- Production refuses the backends that deliver nowhere real (console, locmem, file, dummy),
  and has no default backend at all: the operator names one (and its SMTP host).
- Emails to residents are queued in the outbox in the transaction of their cause and sent
  by the outbox worker: the request does no SMTP, so its duration no longer tells whether
  an address has an account.
- The queued message carries secrets (reset, verification and "Ce n'était pas vous ?"
  links): it is encrypted at rest, bound to its row, never logged, and blanked once
  delivered or abandoned.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import subprocess
import sys
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.test import Client

from connectors.handlers import EMAIL
from connectors.models import OutboxMessage
from identity.checks import check_email_backend
from identity.services import password_reset_request
from tests.conftest import PASSWORD, deliver_emails
from tests.connectors.conftest import ROOT, database_url_of_test_db
from tests.test_settings import PRODUCTION, run_settings

RESET_LINK = re.compile(r"https?://[^/\s]+(?P<path>/mot-de-passe-oublie/[^/\s]+/[^/\s]+/)")
VERIFY_LINK = re.compile(r"https?://\S+/inscription/verifier/(?P<token>[^/\s]+)/")
NEW_EMAIL = "alex.durand@example.org"


class RecordingBackend(BaseEmailBackend):
    """A mail server that records who called it and then fails as a real one can."""

    calls: ClassVar[list[list[str]]] = []
    error: ClassVar[type[Exception] | None] = smtplib.SMTPServerDisconnected

    def send_messages(self, email_messages: Any) -> int:
        RecordingBackend.calls.append([address for message in email_messages for address in message.to])
        if RecordingBackend.error is smtplib.SMTPRecipientsRefused:
            refused = {address: (550, b"no such user") for call in self.calls for address in call}
            raise smtplib.SMTPRecipientsRefused(refused)
        if RecordingBackend.error is not None:
            raise RecordingBackend.error(f"lost the connection while sending to {self.calls[-1]}")
        return len(email_messages)


RECORDING = f"{__name__}.RecordingBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def recording(settings: Any) -> type[RecordingBackend]:
    RecordingBackend.calls = []
    RecordingBackend.error = smtplib.SMTPServerDisconnected
    settings.EMAIL_BACKEND = RECORDING
    return RecordingBackend


def email_rows() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(kind=EMAIL).order_by("created_at"))


# --- production settings ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["console", "locmem", "filebased", "dummy"])
def test_production_refuses_a_backend_that_delivers_nowhere(name):
    result = run_settings({**PRODUCTION, "EMAIL_BACKEND": f"django.core.mail.backends.{name}.EmailBackend"})
    assert result.returncode != 0, result.stdout
    assert "EMAIL_BACKEND" in result.stderr


def test_production_has_no_default_email_backend():
    env = dict(PRODUCTION)
    env.pop("EMAIL_BACKEND")
    result = run_settings(env, "from django.conf import settings; print(settings.EMAIL_BACKEND)")
    assert result.returncode != 0, result.stdout
    assert "EMAIL_BACKEND" in result.stderr


def test_production_smtp_needs_its_host_stated():
    env = dict(PRODUCTION)
    env.pop("EMAIL_HOST")
    result = run_settings(env)
    assert result.returncode != 0, result.stdout
    assert "EMAIL_HOST" in result.stderr


def test_production_accepts_an_smtp_relay_with_a_bounded_timeout():
    code = "from django.conf import settings as s; print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_TIMEOUT)"
    result = run_settings(PRODUCTION, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.core.mail.backends.smtp.EmailBackend", "smtp.example.org", "10"]


def test_deploy_check_fails_on_a_backend_built_on_the_console(tmp_path):
    """A project-local backend subclassing the console one passes the settings' name test:
    the system check looks at what the class is."""
    (tmp_path / "mailshim.py").write_text(
        "from django.core.mail.backends.console import EmailBackend as Console\n\n"
        "class EmailBackend(Console):\n    pass\n"
    )
    env = {**PRODUCTION, "EMAIL_BACKEND": "mailshim.EmailBackend", "PYTHONPATH": str(tmp_path)}
    code = "from django.core.management import call_command; call_command('check', deploy=True)"
    result = run_settings(env, code)
    assert result.returncode != 0
    assert "identity.E010" in result.stderr


def test_check_names_the_unsafe_backend_in_production(settings):
    settings.PRODUCTION = True
    for backend in ("console", "locmem", "filebased", "dummy"):
        settings.EMAIL_BACKEND = f"django.core.mail.backends.{backend}.EmailBackend"
        assert [problem.id for problem in check_email_backend(None)] == ["identity.E010"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert check_email_backend(None) == []
    settings.EMAIL_BACKEND = "no.such.module.EmailBackend"
    assert [problem.id for problem in check_email_backend(None)] == ["identity.E011"]
    settings.PRODUCTION = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    assert check_email_backend(None) == []


# --- the request does no SMTP; the worker sends -----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_password_reset_request_never_touches_the_mail_backend(recording, settings, resident):
    known = Client().post("/mot-de-passe-oublie/", {"email": resident.email})
    unknown = Client().post("/mot-de-passe-oublie/", {"email": "nobody@example.org"})

    assert known.status_code == unknown.status_code == 302
    assert recording.calls == []  # no SMTP inside either request
    rows = email_rows()  # queued (committed): the link, and the note to the unknown address
    assert len(rows) == 2 and {row.status for row in rows} == {OutboxMessage.Status.PENDING}

    settings.EMAIL_BACKEND = LOCMEM
    assert deliver_emails() == 2
    link, note = sorted(mail.outbox, key=lambda message: message.to != [resident.email])
    assert link.to == [resident.email] and RESET_LINK.search(link.body)
    assert note.to == ["nobody@example.org"] and not RESET_LINK.search(note.body)


@pytest.mark.django_db(transaction=True)
def test_registration_never_touches_the_mail_backend(recording, settings, resident):
    data = {"given_name": "Alex", "family_name": "Durand", "password": PASSWORD}
    new = Client().post("/inscription/", {**data, "email": NEW_EMAIL})
    existing = Client().post("/inscription/", {**data, "email": resident.email})

    assert new.status_code == existing.status_code == 302
    assert recording.calls == []
    assert len(email_rows()) == 2

    settings.EMAIL_BACKEND = LOCMEM
    assert deliver_emails() == 2
    assert sorted(message.to[0] for message in mail.outbox) == sorted([NEW_EMAIL, resident.email])


@pytest.mark.django_db(transaction=True)
def test_nothing_is_queued_when_the_cause_rolls_back(recording, resident):
    with pytest.raises(RuntimeError), transaction.atomic():
        password_reset_request(user=resident)
        raise RuntimeError("the change failed after the email was asked for")
    assert email_rows() == []
    assert deliver_emails() == 0
    assert recording.calls == []


# --- what is stored, what is logged -----------------------------------------------------------


def queue_reset(client: Client, email: str) -> OutboxMessage:
    before = {row.pk for row in email_rows()}
    assert client.post("/mot-de-passe-oublie/", {"email": email}).status_code == 302
    (row,) = [row for row in email_rows() if row.pk not in before]
    return row


@pytest.mark.django_db
def test_queued_email_is_encrypted_and_blanked_once_delivered(client, resident, settings):
    row = queue_reset(client, resident.email)
    stored = str(row.payload) + row.destination + row.partner + row.idempotency_key
    assert resident.email not in stored
    assert "mot-de-passe-oublie" not in stored and "Camille" not in stored

    assert deliver_emails() == 1
    (message,) = mail.outbox
    token_path = RESET_LINK.search(message.body).group("path")
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.DELIVERED
    assert row.payload == {}  # nothing lingers once delivered
    assert token_path not in str(row.payload)
    # The message id is the outbox row's: a re-send after a crash carries the same one.
    host = urlsplit(settings.ISSUER).hostname
    assert message.message()["Message-ID"] == f"<{row.pk}@{host}>"


@pytest.mark.django_db
def test_a_payload_moved_to_another_row_is_refused(client, make_resident):
    first = queue_reset(client, make_resident().email)
    second = queue_reset(client, make_resident().email)
    # Someone with write access to the table swaps two payloads.
    OutboxMessage.objects.filter(pk=first.pk).update(payload=second.payload)
    OutboxMessage.objects.filter(pk=second.pk).update(payload=first.payload)

    assert deliver_emails() == 0
    assert not mail.outbox
    for row in (first, second):
        row.refresh_from_db()
        assert row.status == OutboxMessage.Status.DEAD
        assert row.payload == {}


@pytest.mark.django_db
def test_failed_delivery_is_retried_without_leaking_the_address(client, resident, recording, caplog):
    caplog.set_level(logging.DEBUG)
    row = queue_reset(client, resident.email)

    assert deliver_emails() == 0
    assert recording.calls == [[resident.email]]
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.PENDING and row.attempts == 1
    assert row.payload != {}  # kept, still encrypted, for the next attempt
    assert row.last_error == "SMTPServerDisconnected"
    logged = " ".join(record.getMessage() + str(record.exc_text or "") for record in caplog.records)
    assert resident.email not in logged and resident.email not in row.last_error
    # The reset link (/mot-de-passe-oublie/<uidb64>/<token>/) is nowhere; the access line
    # of the form's own POST names its route, which holds nothing secret.
    assert not re.search(r"mot-de-passe-oublie/(?!envoye/|termine/)[^/\s<]+/", logged)


@pytest.mark.django_db
def test_a_refused_recipient_is_dead_lettered_and_blanked(client, resident, recording, caplog):
    caplog.set_level(logging.DEBUG)
    recording.error = smtplib.SMTPRecipientsRefused
    row = queue_reset(client, resident.email)

    assert deliver_emails() == 0
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.DEAD
    assert row.payload == {}
    assert row.last_error == "SMTPRecipientsRefused"
    logged = " ".join(record.getMessage() + str(record.exc_text or "") for record in caplog.records)
    assert resident.email not in logged


@pytest.mark.django_db(transaction=True)
def test_the_outbox_worker_process_sends_the_queued_email(resident):
    """What `python3 dev.py run` starts beside the web server: `manage.py outbox_worker`, a
    separate process, here with the development console backend."""
    assert Client().post("/mot-de-passe-oublie/", {"email": resident.email}).status_code == 302
    (row,) = email_rows()
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "EMAIL_BACKEND", "DJANGO_ENV"}}
    env["DATABASE_URL"] = database_url_of_test_db()
    result = subprocess.run(
        [sys.executable, "manage.py", "outbox_worker", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "delivered=1" in result.stdout
    assert "Choisir un nouveau mot de passe" in result.stdout  # the console backend's print
    assert RESET_LINK.search(result.stdout)
    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.DELIVERED and row.payload == {}
