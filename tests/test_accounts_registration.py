"""Registration, email verification and verification resend."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from common.crypto import keyed_hash
from identity.models import AuditEvent, EmailVerification, User
from tests.conftest import PASSWORD, deliver_emails

pytestmark = pytest.mark.django_db

NEW_EMAIL = "alex.durand@example.org"
LINK = re.compile(r"https?://\S+/inscription/verifier/(?P<token>[^/\s]+)/")


@pytest.fixture
def post(client: Client):
    """POST, then send the emails it queued, as the outbox worker would."""

    def do(url: str, data: dict[str, str], browser: Client | None = None, **extra):
        response = (browser or client).post(url, data, **extra)
        deliver_emails()
        return response

    return do


def register_data(**overrides: str) -> dict[str, str]:
    data = {"email": NEW_EMAIL, "given_name": "Alex", "family_name": "Durand", "password": PASSWORD}
    data.update(overrides)
    return data


def link_from(message) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(0)


def strip_csrf(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def test_registration_page_has_accessible_fields(client):
    response = client.get("/inscription/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("<h1") == 1
    assert 'autocomplete="email"' in html
    assert 'autocomplete="given-name"' in html
    assert 'autocomplete="family-name"' in html
    assert 'autocomplete="new-password"' in html
    # The password rules are shown, and tied to the field.
    assert "Au moins 8 caractères" in html
    assert 'aria-describedby="id_password_helptext"' in html
    assert 'id="id_password_helptext"' in html
    assert '<label for="id_email">' in html


def test_registration_creates_unverified_account_and_emails_a_link(post):
    response = post("/inscription/", register_data(email="Alex.Durand@Example.org"))

    assert response.status_code == 302
    assert response["Location"] == "/inscription/envoye/"
    user = User.objects.get(email=NEW_EMAIL)
    assert user.email_verified is False
    assert (user.given_name, user.family_name) == ("Alex", "Durand")
    assert user.check_password(PASSWORD)
    assert AuditEvent.objects.filter(event="account.created", subject_user_id=user.pk).exists()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [NEW_EMAIL]
    assert message.subject == "Confirmez votre adresse e-mail"
    token = LINK.search(message.body).group("token")
    # Only a keyed hash of the token is stored.
    verification = EmailVerification.objects.get(user=user)
    assert verification.token_hash == keyed_hash(token)
    assert token not in verification.token_hash
    assert verification.used_at is None
    assert verification.expires_at > timezone.now() + timedelta(days=2)


def test_verification_link_verifies_once(client, post):
    post("/inscription/", register_data())
    url = link_from(mail.outbox[0])
    path = url.split("://", 1)[1].split("/", 1)[1]

    response = client.get("/" + path)
    assert response.status_code == 302
    assert response["Location"] == "/inscription/adresse-confirmee/"
    user = User.objects.get(email=NEW_EMAIL)
    assert user.email_verified is True
    assert EmailVerification.objects.get(user=user).used_at is not None
    assert AuditEvent.objects.filter(event="account.email_verified", subject_user_id=user.pk).exists()
    assert "Votre adresse e-mail est confirmée" in client.get(response["Location"]).content.decode()

    again = client.get("/" + path)
    assert again.status_code == 410
    html = again.content.decode()
    assert "déjà été utilisé" in html
    assert 'href="/inscription/renvoyer/"' in html


def test_expired_verification_link_is_refused(client, post):
    post("/inscription/", register_data())
    token = LINK.search(mail.outbox[0].body).group("token")
    EmailVerification.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.get(f"/inscription/verifier/{token}/")

    assert response.status_code == 410
    assert "a expiré" in response.content.decode()
    assert User.objects.get(email=NEW_EMAIL).email_verified is False


def test_unknown_verification_link_gives_a_readable_page(client):
    response = client.get("/inscription/verifier/not-a-real-token/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "n'est pas valide" in html or "n&#x27;est pas valide" in html
    assert 'href="/inscription/renvoyer/"' in html


def test_verification_link_is_not_spent_by_a_head_request(client, post):
    post("/inscription/", register_data())
    token = LINK.search(mail.outbox[0].body).group("token")
    assert client.head(f"/inscription/verifier/{token}/").status_code == 405
    assert EmailVerification.objects.get().used_at is None


def test_duplicate_email_shows_the_same_page_and_creates_nothing(post, make_resident):
    make_resident(NEW_EMAIL, preferred_language="fr")
    fresh = post("/inscription/", register_data(email="new.person@example.org"), browser=Client())
    mail.outbox.clear()
    users_before = User.objects.count()

    duplicate = post("/inscription/", register_data(email="ALEX.durand@example.org", given_name="Eve"))

    assert duplicate.status_code == fresh.status_code == 302
    assert duplicate["Location"] == fresh["Location"]
    assert User.objects.count() == users_before
    assert not EmailVerification.objects.filter(email=NEW_EMAIL).exists()
    assert User.objects.get(email=NEW_EMAIL).given_name == "Camille"  # untouched
    # The owner of the address is told, with a way back into their account.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [NEW_EMAIL]
    assert mail.outbox[0].subject == "Vous avez déjà un compte"
    assert "/mot-de-passe-oublie/" in mail.outbox[0].body
    assert AuditEvent.objects.filter(event="account.registration_duplicate").count() == 1
    page_fresh = strip_csrf(Client().get(fresh["Location"]).content.decode())
    page_duplicate = strip_csrf(Client().get(duplicate["Location"]).content.decode())
    assert page_fresh == page_duplicate


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("court", "au moins 8 caractères"),
        ("motdepasse123", "trop courant"),
        ("password123", "trop courant"),
    ],
)
def test_weak_password_is_refused_with_a_readable_error(client, password, message):
    response = client.post("/inscription/", register_data(password=password))

    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert 'role="alert"' in html
    assert 'href="#id_password"' in html  # the summary links to the field
    assert 'aria-invalid="true"' in html
    assert 'id="id_password_error"' in html
    assert "id_password_helptext id_password_error" in html
    assert "<title>Erreur" in html
    assert not User.objects.filter(email=NEW_EMAIL).exists()
    assert deliver_emails() == 0 and not mail.outbox


def test_missing_fields_are_reported(client):
    response = client.post("/inscription/", {"email": "not-an-email"})
    html = response.content.decode()
    assert response.status_code == 200
    for field in ("email", "given_name", "family_name", "password"):
        assert f'href="#id_{field}"' in html
    assert User.objects.count() == 0


def test_registration_remembers_next_for_sign_in(post):
    response = post("/inscription/?next=/authorize%3Fclient_id%3Dabc", register_data())
    assert response["Location"] == "/inscription/envoye/?next=%2Fauthorize%3Fclient_id%3Dabc"
    evil = post("/inscription/?next=https://evil.example/", register_data(email="b@example.org"))
    assert evil["Location"] == "/inscription/envoye/"


def test_registration_in_english_sends_an_english_email(client, post):
    client.cookies["language"] = "en"
    post("/inscription/", register_data())
    user = User.objects.get(email=NEW_EMAIL)
    assert user.preferred_language == "en"
    assert mail.outbox[0].subject == "Confirm your email address"
    assert "Hello Alex," in mail.outbox[0].body


def test_email_keeps_special_characters_unescaped(post):
    post("/inscription/", register_data(given_name="Zoé-O'Hara"))
    assert "Bonjour Zoé-O'Hara," in mail.outbox[0].body


def test_registration_logs_no_email_address_or_token(post, caplog):
    with caplog.at_level(logging.DEBUG):
        post("/inscription/", register_data())
    token = LINK.search(mail.outbox[0].body).group("token")
    for record in caplog.records:
        text = record.getMessage()
        assert NEW_EMAIL not in text
        assert token not in text


# --- resend -------------------------------------------------------------------------------


def test_resend_for_unverified_unknown_and_verified_addresses_looks_the_same(post, make_resident):
    make_resident("pending@example.org", email_verified=False)
    make_resident("done@example.org", email_verified=True)

    answers = [
        post("/inscription/renvoyer/", {"email": email}, browser=Client())
        for email in ("pending@example.org", "nobody@example.org", "done@example.org")
    ]

    assert {answer.status_code for answer in answers} == {302}
    assert {answer["Location"] for answer in answers} == {"/inscription/renvoyer/envoye/"}
    assert [message.to for message in mail.outbox] == [["pending@example.org"]]


def test_new_link_works_and_spends_the_older_ones(client, post, make_resident):
    make_resident("pending@example.org", email_verified=False)
    post("/inscription/renvoyer/", {"email": "pending@example.org"})
    post("/inscription/renvoyer/", {"email": "pending@example.org"})
    first, second = (LINK.search(message.body).group("token") for message in mail.outbox)

    assert client.get(f"/inscription/verifier/{second}/").status_code == 302
    assert User.objects.get(email="pending@example.org").email_verified
    assert client.get(f"/inscription/verifier/{first}/").status_code == 410


def test_signed_in_unverified_resident_sees_banner_and_can_resend(client, post, make_resident):
    resident = make_resident("pending@example.org", email_verified=False)
    client.post("/connexion/", {"username": resident.email, "password": PASSWORD})

    page = client.get("/compte/").content.decode()
    assert "Confirmez votre adresse e-mail" in page
    assert "pas encore confirmée" in page

    response = post("/inscription/renvoyer/", {})
    assert response.status_code == 302
    assert response["Location"] == "/compte/"
    assert [message.to for message in mail.outbox] == [["pending@example.org"]]
    assert AuditEvent.objects.filter(event="account.verification_sent", subject_user_id=resident.pk).exists()


def test_verified_resident_sees_no_banner(signed_in):
    page = signed_in.get("/compte/").content.decode()
    assert "Confirmez votre adresse e-mail" not in page
    assert "confirmée" in page
