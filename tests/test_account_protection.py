"""Account protection: security notifications, "this wasn't me", sessions ended by password
changes, operator-assisted reset of a lost second factor, and audit/log hygiene."""

from __future__ import annotations

import logging
import re
import time
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core import mail, signing
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.test import Client as BrowserClient

from identity.mfa import services as mfa_services
from identity.mfa.models import BackupCodeDevice, Passkey, TOTPDevice
from identity.models import AuditEvent, BrowserSession, User
from identity.not_me import NOT_ME_MAX_AGE, not_me_token
from identity.sessions import SESSION_SID
from tests.conftest import PASSWORD, OIDCFlow, deliver_emails, staff_mfa_login
from tests.mfa.conftest import FakeClock, TotpResident, rfc6238

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
NEW_PASSWORD = "a brand new passphrase for nantes"
NOT_ME_LINK = re.compile(r"https?://[^/\s]+(?P<path>/compte/ce-netait-pas-moi/[^/\s]+/)")
RESET_LINK = re.compile(r"https?://[^/\s]+(?P<path>/mot-de-passe-oublie/[^/\s]+/[^/\s]+/)")
NEW_DEVICE_SUBJECT = "Nouvelle connexion à votre compte"
CLIENT_IP = "203.0.113.77"


def browser(user_agent: str = FIREFOX) -> BrowserClient:
    return BrowserClient(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=CLIENT_IP)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("identity.mfa.clock.now", fake)
    return fake


@pytest.fixture
def totp_resident(resident: Any, clock: FakeClock) -> TotpResident:
    device, key = mfa_services.totp_enrolment_start(user=resident)
    outcome = mfa_services.totp_enrolment_confirm(
        user=resident, device_id=device.pk, code=rfc6238(key, clock() - 30), name="Téléphone"
    )
    assert outcome.ok
    deliver_emails()  # the "factor added" email of the set-up is not any test's subject
    mail.outbox.clear()
    return TotpResident(resident, key, device.pk)


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: Any) -> Any:
    """Run a request with its after-commit side effects executed, then send the emails it
    queued, as the outbox worker would."""

    def run(call: Any, *args: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            result = call(*args, **kwargs)
        deliver_emails()
        return result

    return run


def sign_in(client: BrowserClient, email: str, on_commit: Any, password: str = PASSWORD) -> Any:
    return on_commit(client.post, "/connexion/", {"username": email, "password": password})


def signed_in(client: BrowserClient) -> bool:
    response = client.get("/compte/")
    return response.status_code == 200


def subjects() -> list[str]:
    return [message.subject for message in mail.outbox]


def not_me_path(message: Any) -> str:
    match = NOT_ME_LINK.search(message.body)
    assert match, message.body
    return match.group("path")


def refresh(rp: Any, refresh_token: str) -> Any:
    return BrowserClient().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        HTTP_AUTHORIZATION=rp.basic_auth(),
    )


def tokens_for(client: BrowserClient, rp: Any) -> dict[str, Any]:
    flow = OIDCFlow(client, rp)
    response = flow.token(flow.get_code())
    assert response.status_code == 200, response.content
    return response.json()


# --- sign-in from a new device ------------------------------------------------------------------


def test_new_device_email_once_per_browser_and_never_on_the_first_sign_in(
    resident: Any, on_commit: Any
) -> None:
    laptop = browser(FIREFOX)
    assert sign_in(laptop, resident.email, on_commit).status_code == 302
    assert NEW_DEVICE_SUBJECT not in subjects()  # the account's very first sign-in

    phone = browser(IPHONE)
    assert sign_in(phone, resident.email, on_commit).status_code == 302
    assert subjects() == [NEW_DEVICE_SUBJECT]
    body = mail.outbox[0].body
    assert mail.outbox[0].to == [resident.email]
    assert "Safari · iPhone" in body and "Ce n'était pas vous ?" in body
    assert "/compte/sessions/" in body and NOT_ME_LINK.search(body)
    assert CLIENT_IP not in body

    # Known devices now: both hold the signed cookie for this account.
    phone.post("/deconnexion/")
    assert sign_in(phone, resident.email, on_commit).status_code == 302
    assert sign_in(laptop, resident.email, on_commit).status_code == 302
    assert subjects() == [NEW_DEVICE_SUBJECT]
    assert (
        AuditEvent.objects.filter(event="login.new_device_notified", subject_user_id=resident.pk).count() == 1
    )


def test_new_device_email_follows_the_second_factor_not_the_password(
    totp_resident: Any, clock: FakeClock, on_commit: Any
) -> None:
    user = totp_resident.user
    User.objects.filter(pk=user.pk).update(last_login=user.created_at)  # not the first sign-in
    phone = browser(IPHONE)
    response = sign_in(phone, user.email, on_commit)
    assert response["Location"] == "/connexion/verification/"
    assert NEW_DEVICE_SUBJECT not in subjects()  # the password alone signs nobody in
    clock.advance(30)
    code = rfc6238(totp_resident.key, clock())
    response = on_commit(phone.post, "/connexion/verification/", {"method": "totp", "totp-code": code})
    assert response.status_code == 302
    assert subjects() == [NEW_DEVICE_SUBJECT]


# --- notifications carry "Ce n'était pas vous ?" ----------------------------------------------


def test_every_security_email_has_a_not_me_link(
    totp_resident: Any, clock: FakeClock, on_commit: Any, make_resident: Any
) -> None:
    user = totp_resident.user
    on_commit(mfa_services.backup_codes_generate, user=user)
    codes = mfa_services.backup_codes_generate(user=user)
    on_commit(mfa_services.backup_code_use, user=user, code=codes[0])
    clock.advance(30)
    on_commit(mfa_services.factor_remove, user=user, kind="totp", factor_id=totp_resident.device_id)
    other = make_resident()
    client = browser()
    client.force_login(other)
    on_commit(
        client.post,
        "/compte/mot-de-passe/",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert subjects() == [
        "Un code de secours a été utilisé pour vous connecter",
        "La vérification en deux étapes de votre compte est désactivée",
        "Votre mot de passe a été modifié",
    ]
    for message in mail.outbox:
        assert "Ce n'était pas vous ?" in message.body and NOT_ME_LINK.search(message.body), message.body


@pytest.mark.parametrize("language", ["fr", "en"])
def test_new_device_email_in_the_residents_language(
    make_resident: Any, on_commit: Any, language: str
) -> None:
    user = make_resident(preferred_language=language)
    sign_in(browser(FIREFOX), user.email, on_commit)
    sign_in(browser(IPHONE), user.email, on_commit)
    expected = NEW_DEVICE_SUBJECT if language == "fr" else "New sign-in to your account"
    assert subjects() == [expected]
    if language == "en":
        assert "Was this not you?" in mail.outbox[0].body


# --- "Ce n'était pas vous ?" ----------------------------------------------------------------------


def _two_browsers_and_a_not_me_link(resident: Any, on_commit: Any) -> tuple[Any, Any, str]:
    laptop = browser(FIREFOX)
    sign_in(laptop, resident.email, on_commit)
    phone = browser(IPHONE)
    sign_in(phone, resident.email, on_commit)
    (message,) = mail.outbox
    return laptop, phone, not_me_path(message)


def test_not_me_get_only_asks_for_confirmation(resident: Any, on_commit: Any) -> None:
    laptop, phone, path = _two_browsers_and_a_not_me_link(resident, on_commit)
    password = User.objects.get(pk=resident.pk).password
    audit_count = AuditEvent.objects.count()
    response = BrowserClient().get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'method="post"' in html and "Protéger mon compte" in html
    assert User.objects.get(pk=resident.pk).password == password
    assert not BrowserSession.objects.filter(ended_at__isnull=False).exists()
    assert AuditEvent.objects.count() == audit_count
    assert signed_in(laptop) and signed_in(phone)
    assert BrowserClient().head(path).status_code == 405


def test_not_me_post_ends_every_session_and_requires_a_new_password(
    resident: Any, on_commit: Any, rp: Any
) -> None:
    laptop, phone, path = _two_browsers_and_a_not_me_link(resident, on_commit)
    tokens = tokens_for(laptop, rp)
    mail.outbox.clear()
    response = on_commit(BrowserClient(REMOTE_ADDR=CLIENT_IP).post, path)  # signed out: works too
    assert response.status_code == 200
    assert "Votre compte est protégé" in response.content.decode()

    assert not signed_in(laptop) and not signed_in(phone)
    assert not BrowserSession.objects.filter(ended_at__isnull=True).exists()
    assert set(BrowserSession.objects.values_list("end_reason", flat=True)) == {"reported_not_me"}
    assert refresh(rp, tokens["refresh_token"]).status_code == 400
    # The old password no longer works; a reset link was emailed.
    assert sign_in(browser(), resident.email, on_commit).status_code == 200
    assert subjects()[0] == "Choisir un nouveau mot de passe"
    reset = RESET_LINK.search(mail.outbox[0].body)
    assert reset
    event = AuditEvent.objects.get(event="account.compromise_reported")
    assert event.subject_user_id == resident.pk
    assert event.data == {
        "source": "new_device",
        "sessions_ended": 2,
        "password_replaced": True,
        "factor_removed": False,
    }
    # The reset link works: the resident gets back in with a password of their choice.
    client = BrowserClient()
    form_url = client.get(reset.group("path"))["Location"]
    assert on_commit(client.post, form_url, {"new_password": NEW_PASSWORD}).status_code == 302
    assert sign_in(browser(), resident.email, on_commit, password=NEW_PASSWORD).status_code == 302


def test_not_me_link_is_single_use(resident: Any, on_commit: Any) -> None:
    _laptop, _phone, path = _two_browsers_and_a_not_me_link(resident, on_commit)
    assert on_commit(BrowserClient().post, path).status_code == 200
    again = BrowserClient().get(path)
    assert again.status_code == 410 and "déjà été utilisé" in again.content.decode()
    assert on_commit(BrowserClient().post, path).status_code == 410
    assert AuditEvent.objects.filter(event="account.compromise_reported").count() == 1


def test_not_me_link_is_spent_by_a_later_password_change(resident: Any, on_commit: Any) -> None:
    laptop, _phone, path = _two_browsers_and_a_not_me_link(resident, on_commit)
    on_commit(
        laptop.post, "/compte/mot-de-passe/", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert BrowserClient().get(path).status_code == 410
    # ... and the password-changed email brought a fresh one.
    assert BrowserClient().get(not_me_path(mail.outbox[-1])).status_code == 200


def test_not_me_link_expires_after_seven_days(resident: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def issued(seconds_ago: int) -> str:
        with monkeypatch.context() as patch:
            patch.setattr(
                signing.TimestampSigner,
                "timestamp",
                lambda self: signing.b62_encode(int(time.time()) - seconds_ago),
            )
            return not_me_token(user=resident, source="new_device")

    assert NOT_ME_MAX_AGE == 7 * 24 * 60 * 60
    fresh = issued(NOT_ME_MAX_AGE - 60)
    stale = issued(NOT_ME_MAX_AGE + 60)
    assert BrowserClient().get(f"/compte/ce-netait-pas-moi/{fresh}/").status_code == 200
    response = BrowserClient().get(f"/compte/ce-netait-pas-moi/{stale}/")
    assert response.status_code == 410 and "expiré" in response.content.decode()
    assert BrowserClient().post(f"/compte/ce-netait-pas-moi/{stale}/").status_code == 410
    assert not AuditEvent.objects.filter(event="account.compromise_reported").exists()


def test_tampered_or_foreign_not_me_links_are_refused(resident: Any) -> None:
    token = not_me_token(user=resident, source="new_device")
    forged = signing.TimestampSigner(salt="something else").sign(token.rsplit(":", 2)[0])
    for bad in (token[:-2] + "xx", forged, "nothing"):
        assert BrowserClient().get(f"/compte/ce-netait-pas-moi/{bad}/").status_code == 404
        assert BrowserClient().post(f"/compte/ce-netait-pas-moi/{bad}/").status_code == 404


def test_not_me_from_a_browser_signed_in_to_that_account(resident: Any, on_commit: Any) -> None:
    laptop, _phone, path = _two_browsers_and_a_not_me_link(resident, on_commit)
    response = on_commit(laptop.post, path)
    assert response.status_code == 200
    assert not signed_in(laptop)


def test_not_me_on_a_factor_added_email_removes_that_factor(
    totp_resident: Any, clock: FakeClock, on_commit: Any
) -> None:
    user = totp_resident.user
    device, key = mfa_services.totp_enrolment_start(user=user)
    on_commit(
        mfa_services.totp_enrolment_confirm,
        user=user,
        device_id=device.pk,
        code=rfc6238(key, clock()),
        name="Téléphone inconnu",
    )
    (message,) = mail.outbox
    assert message.subject == "Un second facteur a été ajouté à votre compte"
    response = on_commit(BrowserClient().post, not_me_path(message))
    assert response.status_code == 200
    assert list(TOTPDevice.objects.filter(user=user).values_list("pk", flat=True)) == [
        totp_resident.device_id
    ]
    removed = AuditEvent.objects.get(event="mfa.factor_removed")
    assert removed.data["factor_id"] == device.pk and removed.data["reported_not_me"] is True


# --- password changes end sessions ----------------------------------------------------------------


def test_password_reset_ends_every_session_and_refresh_tokens(resident: Any, rp: Any, on_commit: Any) -> None:
    laptop = browser(FIREFOX)
    sign_in(laptop, resident.email, on_commit)
    tokens = tokens_for(laptop, rp)
    phone = browser(IPHONE)
    sign_in(phone, resident.email, on_commit)
    assert refresh(rp, tokens["refresh_token"]).status_code == 200
    tokens = tokens_for(laptop, rp)  # the latest refresh token, issued before the reset
    mail.outbox.clear()

    anonymous = BrowserClient()
    on_commit(anonymous.post, "/mot-de-passe-oublie/", {"email": resident.email})
    form_url = anonymous.get(RESET_LINK.search(mail.outbox[0].body).group("path"))["Location"]
    assert on_commit(anonymous.post, form_url, {"new_password": NEW_PASSWORD}).status_code == 302

    response = refresh(rp, tokens["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert not signed_in(laptop) and not signed_in(phone)
    assert set(BrowserSession.objects.values_list("end_reason", flat=True)) == {"password_reset"}
    assert AuditEvent.objects.get(event="session.ended_all").data == {"count": 2, "kept_current": False}


def test_password_reset_from_a_browser_signed_in_to_that_account(resident: Any, on_commit: Any) -> None:
    laptop = browser()
    sign_in(laptop, resident.email, on_commit)
    on_commit(laptop.post, "/mot-de-passe-oublie/", {"email": resident.email})
    form_url = laptop.get(RESET_LINK.search(mail.outbox[-1].body).group("path"))["Location"]
    response = on_commit(laptop.post, form_url, {"new_password": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/mot-de-passe-oublie/termine/"
    assert not signed_in(laptop)


def test_password_change_ends_the_other_sessions_only(resident: Any, rp: Any, on_commit: Any) -> None:
    laptop = browser(FIREFOX)
    sign_in(laptop, resident.email, on_commit)
    phone = browser(IPHONE)
    sign_in(phone, resident.email, on_commit)
    phone_tokens = tokens_for(phone, rp)
    laptop_tokens = tokens_for(laptop, rp)
    response = on_commit(
        laptop.post, "/compte/mot-de-passe/", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert signed_in(laptop) and not signed_in(phone)
    assert refresh(rp, phone_tokens["refresh_token"]).status_code == 400
    assert refresh(rp, laptop_tokens["refresh_token"]).status_code == 200
    live = BrowserSession.objects.filter(ended_at__isnull=True)
    assert [record.sid for record in live] == [laptop.session[SESSION_SID]]


# --- operator-assisted reset of a lost second factor -------------------------------------------


def make_staff(make_resident: Any, email: str | None = None, *, staff: bool = True) -> User:
    user = make_resident(email)
    user.is_staff = staff
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def support_operator(make_resident: Any) -> User:
    operator = make_staff(make_resident, "agent@nantesmetropole.example")
    group, _created = Group.objects.get_or_create(name="support")
    operator.groups.add(group)
    operator.user_permissions.add(Permission.objects.get(codename="view_user"))
    return operator


@pytest.fixture
def protected_resident(totp_resident: Any, clock: FakeClock, on_commit: Any) -> Any:
    user = totp_resident.user
    mfa_services.backup_codes_generate(user=user)
    laptop = browser()
    sign_in(laptop, user.email, on_commit)
    clock.advance(30)
    on_commit(
        laptop.post,
        "/connexion/verification/",
        {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())},
    )
    assert signed_in(laptop)
    mail.outbox.clear()
    return user, laptop


def _has_factors(user: User) -> bool:
    return (
        TOTPDevice.objects.filter(user=user).exists()
        or Passkey.objects.filter(user=user).exists()
        or BackupCodeDevice.objects.filter(user=user).exists()
    )


def test_operator_reset_by_command(
    protected_resident: Any, support_operator: User, django_capture_on_commit_callbacks: Any
) -> None:
    user, laptop = protected_resident
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "reset_second_factor",
            email=user.email,
            operator=support_operator.email,
            reason="téléphone perdu, identité vérifiée au guichet, ticket 4521",
            stdout=out,
        )
    deliver_emails()
    assert not _has_factors(user)
    assert not signed_in(laptop)
    assert str(user.pk) in out.getvalue() and user.email not in out.getvalue()
    event = AuditEvent.objects.get(event="mfa.factors_reset")
    assert event.acting_user_id == support_operator.pk and event.subject_user_id == user.pk
    assert event.data == {
        "reason": "téléphone perdu, identité vérifiée au guichet, ticket 4521",
        "totp": 1,
        "passkeys": 0,
        "backup_codes": True,
        "sessions_ended": 1,
    }
    assert subjects() == ["La vérification en deux étapes de votre compte a été réinitialisée"]
    assert mail.outbox[0].to == [user.email] and NOT_ME_LINK.search(mail.outbox[0].body)
    # The resident signs in with the password alone again.
    assert (
        BrowserClient().post("/connexion/", {"username": user.email, "password": PASSWORD}).status_code == 302
    )


@pytest.mark.parametrize("who", ["not_in_group", "not_staff", "inactive"])
def test_operator_reset_by_command_is_refused_without_the_support_group(
    protected_resident: Any, make_resident: Any, who: str
) -> None:
    user, _laptop = protected_resident
    operator = make_staff(make_resident, "someone@nantesmetropole.example", staff=who != "not_staff")
    if who != "not_in_group":
        operator.groups.add(Group.objects.get_or_create(name="support")[0])
    if who == "inactive":
        User.objects.filter(pk=operator.pk).update(is_active=False)
    with pytest.raises(CommandError, match="may not reset"):
        call_command("reset_second_factor", email=user.email, operator=operator.email, reason="ticket 1")
    assert _has_factors(user)
    assert not AuditEvent.objects.filter(event="mfa.factors_reset").exists()
    assert deliver_emails() == 0 and not mail.outbox


def test_operator_reset_needs_a_short_reason(protected_resident: Any, support_operator: User) -> None:
    user, _laptop = protected_resident
    for reason in ("   ", "x" * 201):
        with pytest.raises(CommandError, match="reason"):
            call_command(
                "reset_second_factor", email=user.email, operator=support_operator.email, reason=reason
            )
    with pytest.raises(CommandError, match="no resident"):
        call_command(
            "reset_second_factor",
            email="nobody@example.org",
            operator=support_operator.email,
            reason="ticket",
        )
    assert _has_factors(user)


def test_operator_reset_by_admin_action(
    protected_resident: Any, support_operator: User, django_capture_on_commit_callbacks: Any
) -> None:
    user, laptop = protected_resident
    admin = staff_mfa_login(BrowserClient(), support_operator)  # staff work at the MFA level
    changelist = admin.get("/admin/identity/user/")
    assert changelist.status_code == 200
    assert "reset_second_factor" in changelist.content.decode()
    selection = {"action": "reset_second_factor", "_selected_action": [str(user.pk)]}
    confirm = admin.post("/admin/identity/user/", selection)
    assert confirm.status_code == 200
    assert "Réinitialiser la double authentification" in confirm.content.decode()
    assert _has_factors(user)  # nothing happens before the confirmation
    # A reason is required.
    again = admin.post("/admin/identity/user/", {**selection, "confirm": "yes", "reason": ""})
    assert again.status_code == 200 and _has_factors(user)
    with django_capture_on_commit_callbacks(execute=True):
        done = admin.post(
            "/admin/identity/user/", {**selection, "confirm": "yes", "reason": "clé perdue, ticket 88"}
        )
    deliver_emails()
    assert done.status_code == 302
    assert not _has_factors(user)
    assert not signed_in(laptop)
    event = AuditEvent.objects.get(event="mfa.factors_reset")
    assert event.acting_user_id == support_operator.pk and event.subject_user_id == user.pk
    assert event.data["reason"] == "clé perdue, ticket 88"
    assert subjects() == ["La vérification en deux étapes de votre compte a été réinitialisée"]


def test_admin_action_is_refused_without_the_support_group(
    protected_resident: Any, make_resident: Any
) -> None:
    user, _laptop = protected_resident
    staff = make_staff(make_resident, "staff@nantesmetropole.example")
    staff.user_permissions.add(Permission.objects.get(codename="view_user"))
    admin = staff_mfa_login(BrowserClient(), staff)
    changelist = admin.get("/admin/identity/user/")
    assert changelist.status_code == 200
    assert "reset_second_factor" not in changelist.content.decode()
    selection = {"action": "reset_second_factor", "_selected_action": [str(user.pk)]}
    admin.post("/admin/identity/user/", {**selection, "confirm": "yes", "reason": "ticket 1"})
    assert _has_factors(user)
    assert not AuditEvent.objects.filter(event="mfa.factors_reset").exists()


def test_factors_reset_service_refuses_an_operator_without_the_group(
    protected_resident: Any, make_resident: Any
) -> None:
    user, _laptop = protected_resident
    staff = make_staff(make_resident)
    with pytest.raises(PermissionDenied):
        mfa_services.factors_reset(user=user, operator=staff, reason="ticket 1")
    assert _has_factors(user)


# --- audit events and log hygiene ---------------------------------------------------------------


def test_every_sign_in_outcome_is_audited(resident: Any, on_commit: Any, settings: Any) -> None:
    settings.LOGIN_RATE_LIMIT = {**settings.LOGIN_RATE_LIMIT, "per_account": 2}
    client = browser()
    sign_in(client, "nobody@example.org", on_commit, password="wrong password")
    sign_in(client, resident.email, on_commit, password="wrong password")
    sign_in(client, resident.email, on_commit, password="wrong password")  # locks the account
    sign_in(client, resident.email, on_commit)  # refused before the password is checked
    events = list(AuditEvent.objects.filter(event__startswith="login.").order_by("created_at", "pk"))
    assert [(e.event, e.subject_user_id) for e in events] == [
        ("login.failed", None),
        ("login.failed", resident.pk),
        ("login.failed", resident.pk),
        ("login.locked", resident.pk),
        ("login.blocked", resident.pk),
    ]
    assert events[0].data == {"known_device": False, "known_account": False}
    assert events[-1].data == {"scope": "account"}


def test_wrong_current_password_and_failed_passwordless_sign_in_are_audited(
    resident: Any, on_commit: Any
) -> None:
    client = browser()
    sign_in(client, resident.email, on_commit)
    client.post("/compte/mot-de-passe/", {"current_password": "not it", "new_password": NEW_PASSWORD})
    assert AuditEvent.objects.filter(event="password.check_failed", subject_user_id=resident.pk).exists()
    anonymous = browser()
    assert anonymous.post("/connexion/cle/options/").status_code == 200
    response = anonymous.post(
        "/connexion/cle/", {"credential": {"id": "AAAA"}}, content_type="application/json"
    )
    assert response.status_code == 400
    assert AuditEvent.objects.filter(event="login.passkey_failed", subject_user_id=None).exists()


def test_no_personal_data_in_logs_or_audit_rows(
    resident: Any, on_commit: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-Passphrase-42!"
    sign_in(browser(FIREFOX), resident.email, on_commit, password=wrong)
    sign_in(browser(FIREFOX), "unknown.person@example.org", on_commit, password=wrong)
    sign_in(browser(FIREFOX), resident.email, on_commit)
    sign_in(browser(IPHONE), resident.email, on_commit)  # new device: an email is sent
    assert subjects() == [NEW_DEVICE_SUBJECT]
    assert caplog.records, "the sign-ins produced log records to check"
    logged = caplog.text + " ".join(str(record.args) for record in caplog.records)
    for secret in (resident.email, "unknown.person@example.org", "example.org", PASSWORD, wrong, CLIENT_IP):
        assert secret not in logged
    audit = " ".join(f"{e.event} {e.data} {e.ip_hash} {e.client_id}" for e in AuditEvent.objects.all())
    for secret in (resident.email, "unknown.person", PASSWORD, wrong, CLIENT_IP):
        assert secret not in audit
    assert AuditEvent.objects.filter(event="login.succeeded").exclude(ip_hash="").exists()
