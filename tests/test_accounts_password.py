"""Password reset (never reveals an account) and password change."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import mail
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from identity.models import AuditEvent
from identity.services import user_create
from tests.conftest import PASSWORD, deliver_emails

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new passphrase for nantes"
RESET_LINK = re.compile(r"https?://[^/\s]+(?P<path>/mot-de-passe-oublie/[^/\s]+/[^/\s]+/)")


@pytest.fixture
def post(client: Client):
    """POST, then send the emails it queued, as the outbox worker would."""

    def do(url: str, data: dict[str, str], browser: Client | None = None):
        response = (browser or client).post(url, data)
        deliver_emails()
        return response

    return do


def strip_csrf(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def reset_path(message) -> str:
    match = RESET_LINK.search(message.body)
    assert match, message.body
    return match.group("path")


def can_sign_in(email: str, password: str) -> bool:
    return Client().post("/connexion/", {"username": email, "password": password}).status_code == 302


def test_reset_request_is_identical_for_known_and_unknown_addresses(post, resident):
    known = post("/mot-de-passe-oublie/", {"email": resident.email}, browser=Client())
    unknown = post("/mot-de-passe-oublie/", {"email": "nobody@example.org"}, browser=Client())

    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == "/mot-de-passe-oublie/envoye/"
    assert strip_csrf(Client().get(known["Location"]).content.decode()) == strip_csrf(
        Client().get(unknown["Location"]).content.decode()
    )
    # Each typed address gets one email: the owner a link, the address without an account
    # a note saying so (with no link that changes anything).
    assert [message.to for message in mail.outbox] == [[resident.email], ["nobody@example.org"]]
    assert mail.outbox[0].subject == "Choisir un nouveau mot de passe"
    assert mail.outbox[1].subject == "Aucun compte avec cette adresse"
    assert "/mot-de-passe-oublie/" in mail.outbox[1].body and "/inscription/" in mail.outbox[1].body
    assert not re.search(r"/mot-de-passe-oublie/[^/\s]+/[^/\s]+/", mail.outbox[1].body)
    assert (
        AuditEvent.objects.filter(event="password.reset_requested", subject_user_id=resident.pk).count() == 1
    )
    unknown_row = AuditEvent.objects.get(event="password.reset_requested_unknown")
    assert unknown_row.subject_user_id is None and "nobody@example.org" not in str(unknown_row.data)


def test_reset_email_for_an_unknown_address_is_in_the_language_of_the_page(post, db):
    post("/mot-de-passe-oublie/", {"email": "nobody@example.org"}, browser=Client(HTTP_ACCEPT_LANGUAGE="en"))
    (message,) = mail.outbox
    assert message.subject == "No account with this address"
    assert "nothing was changed" in message.body


def test_reset_form_reports_an_invalid_address(client, db):
    response = client.post("/mot-de-passe-oublie/", {"email": "not-an-address"})
    assert response.status_code == 200
    assert 'href="#id_email"' in response.content.decode()
    assert deliver_emails() == 0 and not mail.outbox


def test_reset_link_sets_a_new_password_once(client, post, resident):
    post("/mot-de-passe-oublie/", {"email": resident.email})
    path = reset_path(mail.outbox[0])

    # Django moves the token out of the URL before showing the form.
    step = client.get(path)
    assert step.status_code == 302
    form_url = step["Location"]
    assert form_url.endswith("/set-password/")
    page = client.get(form_url).content.decode()
    assert 'autocomplete="new-password"' in page

    done = post(form_url, {"new_password": NEW_PASSWORD})
    assert done.status_code == 302
    assert done["Location"] == "/mot-de-passe-oublie/termine/"
    assert can_sign_in(resident.email, NEW_PASSWORD)
    assert not can_sign_in(resident.email, PASSWORD)
    assert AuditEvent.objects.filter(event="password.reset", subject_user_id=resident.pk).exists()
    assert mail.outbox[-1].subject == "Votre mot de passe a été modifié"

    reused = Client().get(path, follow=True)
    assert "Ce lien ne fonctionne pas" in reused.content.decode()


def test_expired_reset_link_is_refused(client, resident):
    class IssuedTwoHoursAgo(PasswordResetTokenGenerator):
        def _now(self) -> datetime:
            return datetime.now() - timedelta(hours=2)

    token = IssuedTwoHoursAgo().make_token(resident)
    uid = urlsafe_base64_encode(force_bytes(resident.pk))

    response = client.get(f"/mot-de-passe-oublie/{uid}/{token}/", follow=True)

    assert "Ce lien ne fonctionne pas" in response.content.decode()
    assert 'href="/mot-de-passe-oublie/"' in response.content.decode()
    assert (
        client.post(f"/mot-de-passe-oublie/{uid}/set-password/", {"new_password": NEW_PASSWORD}).status_code
        == 200
    )
    assert can_sign_in(resident.email, PASSWORD)


def test_reset_refuses_a_weak_password(client, post, resident):
    post("/mot-de-passe-oublie/", {"email": resident.email})
    form_url = client.get(reset_path(mail.outbox[0]))["Location"]
    response = client.post(form_url, {"new_password": "azerty123"})
    assert response.status_code == 200
    assert "trop courant" in response.content.decode()
    assert can_sign_in(resident.email, PASSWORD)


def test_reset_ends_the_other_sessions(signed_in, post, resident):
    assert signed_in.get("/compte/").status_code == 200
    other = Client()
    post("/mot-de-passe-oublie/", {"email": resident.email}, browser=other)
    form_url = other.get(reset_path(mail.outbox[0]))["Location"]
    post(form_url, {"new_password": NEW_PASSWORD}, browser=other)

    assert signed_in.get("/compte/").status_code == 302


def test_reset_email_is_in_the_residents_language(post, make_resident):
    make_resident("anglo@example.org", preferred_language="en")
    post("/mot-de-passe-oublie/", {"email": "anglo@example.org"})
    assert mail.outbox[0].subject == "Choose a new password"


# --- password change ----------------------------------------------------------------------


def test_password_change_needs_sign_in(client, db):
    response = client.get("/compte/mot-de-passe/")
    assert response.status_code == 302
    assert response["Location"].startswith("/connexion/")


def test_password_change_page_fields(signed_in):
    html = signed_in.get("/compte/mot-de-passe/").content.decode()
    assert html.count("<h1") == 1
    assert 'autocomplete="current-password"' in html
    assert 'autocomplete="new-password"' in html


def test_password_change_requires_the_current_password(signed_in, resident):
    response = signed_in.post(
        "/compte/mot-de-passe/", {"current_password": "not my password", "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Le mot de passe actuel est incorrect" in html
    assert 'href="#id_current_password"' in html
    assert can_sign_in(resident.email, PASSWORD)
    assert not AuditEvent.objects.filter(event="password.changed").exists()


def test_password_change_refuses_a_weak_password(signed_in, resident):
    response = signed_in.post(
        "/compte/mot-de-passe/", {"current_password": PASSWORD, "new_password": "short"}
    )
    assert response.status_code == 200
    assert "au moins 8 caractères" in response.content.decode()
    assert can_sign_in(resident.email, PASSWORD)


def test_password_change_keeps_this_session_and_ends_the_others(signed_in, resident, post):
    other = Client()
    assert other.post("/connexion/", {"username": resident.email, "password": PASSWORD}).status_code == 302
    deliver_emails()  # the second browser's new-device email: not this test's subject
    mail.outbox.clear()

    response = post(
        "/compte/mot-de-passe/",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        browser=signed_in,
    )

    assert response.status_code == 302
    assert response["Location"] == "/compte/"
    assert signed_in.get("/compte/").status_code == 200
    assert other.get("/compte/").status_code == 302
    assert can_sign_in(resident.email, NEW_PASSWORD)
    assert AuditEvent.objects.filter(event="password.changed", subject_user_id=resident.pk).exists()
    assert [message.to for message in mail.outbox] == [[resident.email]]
    assert mail.outbox[0].subject == "Votre mot de passe a été modifié"


def test_an_account_without_a_password_chooses_one_by_email(client, post):
    """Accounts created through FranceConnect or `create_dpo` have no usable password yet."""
    user = user_create(email="sans-mot-de-passe@example.org", password=None, email_verified=False)
    assert not user.has_usable_password()
    post("/mot-de-passe-oublie/", {"email": user.email})
    path = reset_path(mail.outbox[0])
    form_url = client.get(path)["Location"]
    assert post(form_url, {"new_password": NEW_PASSWORD}).status_code == 302
    assert can_sign_in(user.email, NEW_PASSWORD)
