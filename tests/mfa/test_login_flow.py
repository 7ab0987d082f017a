"""Sign-in with a second factor, the half-authenticated state, step-up, and factor removal."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client, RequestFactory

from identity.levels import ACR_BASIC, ACR_MFA
from identity.mfa import services
from identity.mfa.models import BackupCodeDevice, TOTPDevice
from identity.mfa.selectors import session_acr, step_up_url, user_has_mfa
from identity.models import AuditEvent
from identity.sessions import SESSION_AMR, SESSION_AUTH_TIME
from tests.conftest import deliver_emails
from tests.mfa.conftest import key_from_page, rfc6238, sign_in_password

pytestmark = pytest.mark.django_db


def wrong_code(key: bytes, at: float) -> str:
    return str((int(rfc6238(key, at)) + 1) % 1_000_000).zfill(6)


def test_password_only_resident_signs_in_directly(client: Client, resident: Any) -> None:
    assert not user_has_mfa(resident)
    response = sign_in_password(client, resident.email)
    assert response.status_code == 302 and response["Location"] == "/compte/"
    assert client.session[SESSION_AMR] == ["pwd"]
    assert client.get("/compte/").status_code == 200


def test_mfa_resident_is_not_signed_in_until_the_second_factor(
    client: Client, totp_resident: Any, clock: Any
) -> None:
    assert user_has_mfa(totp_resident.user)
    response = sign_in_password(client, totp_resident.user.email, next_url="/compte/securite/")
    assert response.status_code == 302 and response["Location"] == "/connexion/verification/"
    assert "_auth_user_id" not in client.session
    # In between, the resident is anonymous everywhere.
    response = client.get("/compte/")
    assert response.status_code == 302 and response["Location"].startswith("/connexion/?next=/compte/")
    page = client.get("/connexion/verification/")
    assert page.status_code == 200
    assert "Code de votre application d" in page.content.decode()

    response = client.post(
        "/connexion/verification/",
        {"method": "totp", "totp-code": wrong_code(totp_resident.key, clock())},
    )
    assert response.status_code == 200
    assert "Ce code n" in response.content.decode()
    assert "_auth_user_id" not in client.session

    clock.advance(1)
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    assert response.status_code == 302 and response["Location"] == "/compte/securite/"
    assert client.session["_auth_user_id"] == str(totp_resident.user.pk)
    assert client.session[SESSION_AMR] == ["pwd", "otp", "mfa"]
    assert client.session["otp_device_id"] == f"mfa.totpdevice/{totp_resident.device_id}"  # django-otp
    response = client.get("/compte/")
    assert response.status_code == 200 and response.wsgi_request.user.is_verified()
    events = list(AuditEvent.objects.values_list("event", flat=True))
    assert "login.second_factor_required" in events and "mfa.verify_succeeded" in events
    # The marker is gone: the verification page now serves step-up only.
    assert "mfa.pending" not in client.session


def test_next_must_be_a_same_site_relative_url(client: Client, totp_resident: Any, clock: Any) -> None:
    sign_in_password(client, totp_resident.user.email, next_url="https://evil.example/")
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    assert response["Location"] == "/compte/"


def test_half_authenticated_marker_expires(client: Client, totp_resident: Any, clock: Any) -> None:
    sign_in_password(client, totp_resident.user.email)
    clock.advance(5 * 60 + 1)
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")
    assert "_auth_user_id" not in client.session
    assert TOTPDevice.objects.get(pk=totp_resident.device_id).last_used_at is None or (
        TOTPDevice.objects.get(pk=totp_resident.device_id).last_used_step < int(clock() // 30)
    )


def test_second_factor_failures_count_towards_the_sign_in_limits(
    client: Client, totp_resident: Any, clock: Any, settings: Any
) -> None:
    settings.MFA_THROTTLE_FACTOR = 0  # only identity.ratelimit's limits in this test
    sign_in_password(client, totp_resident.user.email)
    for _attempt in range(settings.LOGIN_RATE_LIMIT["per_account"] - 1):
        client.post(
            "/connexion/verification/",
            {"method": "totp", "totp-code": wrong_code(totp_resident.key, clock())},
        )
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": wrong_code(totp_resident.key, clock())}
    )
    assert "Trop de tentatives" in response.content.decode()
    # Now even the right code is refused before being looked at.
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    assert "Trop de tentatives" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_step_up_from_a_password_only_session(client: Client, resident: Any, clock: Any) -> None:
    # Signed in with the password (no factor yet), then adds a TOTP app in this session.
    sign_in_password(client, resident.email)
    assert client.session[SESSION_AMR] == ["pwd"]
    key = key_from_page(client.get("/compte/securite/application/ajouter/").content.decode())
    assert (
        client.post("/compte/securite/application/ajouter/", {"code": rfc6238(key, clock())}).status_code
        == 302
    )
    assert client.session[SESSION_AMR] == ["pwd"]  # enrolment alone does not upgrade the session
    request = RequestFactory().get("/")
    request.session = client.session
    assert session_acr(request) == ACR_BASIC

    session = client.session
    session[SESSION_AUTH_TIME] = int(time.time()) - 3600
    session.save()
    next_url = "/authorize?client_id=abc&acr_values=https%3A%2F%2Frefeds.org%2Fprofile%2Fmfa"
    assert step_up_url(next_url).startswith("/connexion/verification/?next=")
    page = client.get(step_up_url(next_url))
    assert page.status_code == 200
    assert "demande une vérification supplémentaire" in page.content.decode()
    clock.advance(30)
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(key, clock()), "next": next_url}
    )
    assert response.status_code == 302 and response["Location"] == next_url
    assert client.session[SESSION_AMR] == ["pwd", "otp", "mfa"]
    assert client.session[SESSION_AUTH_TIME] >= int(time.time()) - 5
    request.session = client.session
    assert session_acr(request) == ACR_MFA


def test_step_up_without_any_factor_explains_what_to_do(signed_in: Client) -> None:
    response = signed_in.get("/connexion/verification/?next=/authorize")
    assert response.status_code == 403
    assert "/compte/securite/" in response.content.decode()


def test_verification_page_without_password_step_goes_to_login(client: Client) -> None:
    response = client.get("/connexion/verification/?next=/compte/")
    assert response.status_code == 302 and response["Location"] == "/connexion/?next=%2Fcompte%2F"


def test_removing_the_last_factor_needs_a_fresh_sign_in(
    client: Client, totp_resident: Any, clock: Any, django_capture_on_commit_callbacks: Any, mailoutbox: Any
) -> None:
    services.backup_codes_generate(user=totp_resident.user)
    sign_in_password(client, totp_resident.user.email)
    client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    remove = f"/compte/securite/totp/{totp_resident.device_id}/supprimer/"

    session = client.session
    session[SESSION_AUTH_TIME] = int(clock()) - 11 * 60  # more than the 10 minutes of identity.reauth
    session.save()
    response = client.post(remove)
    assert response.status_code == 302
    assert response["Location"] == f"/connexion/?next={remove.replace('/', '%2F')}"
    assert TOTPDevice.objects.filter(pk=totp_resident.device_id).exists()

    # Sign in again (password + code): then removal is allowed.
    clock.advance(30)
    response = sign_in_password(client, totp_resident.user.email, next_url=remove)
    assert response["Location"] == "/connexion/verification/"
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    assert response["Location"] == remove
    page = client.get(remove)
    assert page.status_code == 200 and "dernier second facteur" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(remove)
    deliver_emails()
    assert response.status_code == 302 and response["Location"] == "/compte/securite/"
    assert not TOTPDevice.objects.filter(user=totp_resident.user).exists()
    assert not BackupCodeDevice.objects.filter(user=totp_resident.user).exists()
    assert not user_has_mfa(totp_resident.user)
    assert mailoutbox[-1].subject == "La vérification en deux étapes de votre compte est désactivée"
    assert "Ce n'était pas vous ?" in mailoutbox[-1].body
    event = AuditEvent.objects.filter(event="mfa.factor_removed").get()
    assert event.data == {"kind": "totp", "factor_id": totp_resident.device_id, "last": True}


def test_rename_and_list(client: Client, totp_resident: Any, clock: Any) -> None:
    sign_in_password(client, totp_resident.user.email)
    client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    page = client.get("/compte/securite/").content.decode()
    assert "Téléphone" in page and "Application d&#x27;authentification" in page
    rename = f"/compte/securite/totp/{totp_resident.device_id}/renommer/"
    assert client.post(rename, {"name": "  "}).status_code == 200
    assert client.post(rename, {"name": "Tablette"}).status_code == 302
    assert TOTPDevice.objects.get(pk=totp_resident.device_id).name == "Tablette"
    # Someone else's factor is not found.
    assert client.get("/compte/securite/totp/999999/renommer/").status_code == 404


def test_account_page_links_to_factor_management(signed_in: Client) -> None:
    html = signed_in.get("/compte/").content.decode()
    assert "Sécurité de connexion" in html and 'href="/compte/securite/"' in html
