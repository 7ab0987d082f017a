"""Sign-in, `next` handling, login_hint, sign-out and the account page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from identity.models import AuditEvent
from identity.sessions import SESSION_AMR, SESSION_AUTH_TIME
from tests.conftest import PASSWORD, OIDCFlow

pytestmark = pytest.mark.django_db

WRONG = "Adresse e-mail ou mot de passe incorrect."


def error_summary(html: str) -> str:
    match = re.search(r'<div class="error-summary".*?</div>', html, re.S)
    assert match, html
    return match.group(0)


def test_login_page_fields(client):
    html = client.get("/connexion/").content.decode()
    assert html.count("<h1") == 1
    assert 'name="username"' in html
    assert 'autocomplete="email"' in html
    assert 'name="password"' in html
    assert 'autocomplete="current-password"' in html
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    assert 'href="/mot-de-passe-oublie/"' in html
    assert 'href="/inscription/"' in html


def test_sign_in_opens_a_session_and_records_it(client, resident):
    response = client.post("/connexion/", {"username": "Camille@Example.org", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/compte/"
    assert client.session["_auth_user_id"] == str(resident.pk)
    assert client.session[SESSION_AMR] == ["pwd"]
    assert client.session[SESSION_AUTH_TIME] > 0
    assert AuditEvent.objects.filter(event="login.succeeded", subject_user_id=resident.pk).exists()
    assert "known_device" in response.cookies
    assert response.cookies["known_device"]["httponly"]


def test_wrong_password_and_unknown_email_give_the_same_answer(resident):
    wrong_password = Client().post("/connexion/", {"username": resident.email, "password": "not it at all"})
    unknown_email = Client().post(
        "/connexion/", {"username": "nobody@example.org", "password": "not it at all"}
    )

    assert wrong_password.status_code == unknown_email.status_code == 200
    assert WRONG in wrong_password.content.decode()
    summary_wrong = error_summary(wrong_password.content.decode())
    summary_unknown = error_summary(unknown_email.content.decode())
    assert summary_wrong == summary_unknown
    assert 'role="alert"' in summary_wrong
    assert "_auth_user_id" not in Client().session


def test_failed_sign_in_keeps_the_email_but_not_the_password(client, resident):
    html = client.post(
        "/connexion/", {"username": resident.email, "password": "a wrong password"}
    ).content.decode()
    assert f'value="{resident.email}"' in html
    assert "a wrong password" not in html


def test_empty_form_reports_both_fields(client, db):
    html = client.post("/connexion/", {}).content.decode()
    assert 'href="#id_username"' in html
    assert 'href="#id_password"' in html


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/authorize?client_id=abc&state=xyz", "/authorize?client_id=abc&state=xyz"),
        ("https://evil.example/steal", "/compte/"),
        ("//evil.example/steal", "/compte/"),
        ("http://testserver.evil.example/", "/compte/"),
        ("javascript:alert(1)", "/compte/"),
    ],
)
def test_next_only_follows_relative_urls_on_this_site(client, resident, next_url, expected):
    response = client.post(
        "/connexion/", {"username": resident.email, "password": PASSWORD, "next": next_url}
    )
    assert response.status_code == 302
    assert response["Location"] == expected


def test_next_from_the_query_string_is_kept_in_the_form(client, db):
    html = client.get("/connexion/", {"next": "/authorize?client_id=abc"}).content.decode()
    assert 'name="next" value="/authorize?client_id=abc"' in html
    assert 'href="/inscription/?next=%2Fauthorize%3Fclient_id%3Dabc"' in html
    evil = client.get("/connexion/", {"next": "https://evil.example/"}).content.decode()
    assert 'value="https://evil.example/"' not in evil
    assert 'href="/inscription/"' in evil


def test_login_hint_prefills_the_email(client, db):
    html = client.get("/connexion/", {"login_hint": "camille@example.org"}).content.decode()
    assert 'value="camille@example.org"' in html
    ignored = client.get("/connexion/", {"login_hint": "not an email"}).content.decode()
    assert 'value="not an email"' not in ignored


def test_authorize_sends_to_login_and_comes_back(client, resident, rp):
    flow = OIDCFlow(client, rp)
    to_login = flow.authorize(login_hint=resident.email)
    assert to_login.status_code == 302
    login_url = to_login["Location"]
    assert urlsplit(login_url).path == "/connexion/"
    query = parse_qs(urlsplit(login_url).query)
    next_url = query["next"][0]

    page = client.get(login_url).content.decode()
    assert f'value="{resident.email}"' in page

    response = client.post(login_url, {"username": resident.email, "password": PASSWORD, "next": next_url})
    assert response.status_code == 302
    assert response["Location"] == next_url
    assert response["Location"].startswith("/authorize?")


def test_unverified_resident_may_sign_in(client, make_resident):
    resident = make_resident("late@example.org", email_verified=False)
    response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    assert response.status_code == 302
    assert "pas encore confirmée" in client.get("/compte/").content.decode()


def test_inactive_resident_cannot_sign_in(client, make_resident):
    resident = make_resident("gone@example.org")
    resident.is_active = False
    resident.save(update_fields=["is_active"])
    response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    assert response.status_code == 200
    assert WRONG in response.content.decode()


def test_legacy_hash_is_upgraded_at_sign_in(client, resident):
    resident.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    resident.save(update_fields=["password"])
    response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    assert response.status_code == 302
    resident.refresh_from_db()
    assert resident.password.startswith("argon2")


# --- account page and sign-out --------------------------------------------------------------


def test_account_page_needs_sign_in(client, db):
    response = client.get("/compte/")
    assert response.status_code == 302
    assert response["Location"].startswith("/connexion/?next=/compte/")


def test_account_page_shows_the_resident(signed_in, resident):
    html = signed_in.get("/compte/").content.decode()
    assert html.count("<h1") == 1
    assert resident.email in html
    assert "Camille" in html and "Martin" in html
    assert 'href="/compte/mot-de-passe/"' in html
    assert 'action="/deconnexion/"' in html


def test_logout_get_asks_for_confirmation_and_keeps_the_session(signed_in):
    response = signed_in.get("/deconnexion/")
    assert response.status_code == 200
    assert "Voulez-vous vous déconnecter" in response.content.decode()
    assert signed_in.get("/compte/").status_code == 200


def test_logout_post_ends_the_session(signed_in, resident):
    response = signed_in.post("/deconnexion/")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert signed_in.get("/compte/").status_code == 302
    assert AuditEvent.objects.filter(event="logout", subject_user_id=resident.pk).exists()


def test_logout_without_csrf_token_is_refused(resident):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(resident, backend="identity.email_backend.EmailBackend")
    assert browser.post("/deconnexion/").status_code == 403
    assert browser.get("/compte/").status_code == 200


def test_logout_with_csrf_token_works(resident):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(resident, backend="identity.email_backend.EmailBackend")
    page = browser.get("/deconnexion/").content.decode()
    token = re.search(
        r'action="/deconnexion/">\s*<input type="hidden" name="csrfmiddlewaretoken" value="([^"]+)"', page
    )
    assert token, page
    assert browser.post("/deconnexion/", {"csrfmiddlewaretoken": token.group(1)}).status_code == 302
    assert browser.get("/compte/").status_code == 302
