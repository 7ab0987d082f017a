"""Issue 9, finding 2: a one-factor session must not turn itself into an MFA session.

The attack: a FranceConnect sign-in (amr ["pwd"]) or a passkey used without user
verification (amr ["hwk"] / ["swk"]) adds its own TOTP app, or regenerates the backup
codes (shown on screen, the victim's invalidated), then passes /connexion/verification/
and obtains acr=https://refeds.org/profile/mfa; it can also remove the victim's factors.

Required and tested here: once the account has a factor, adding or removing one, renaming
one and regenerating backup codes need a session at the MFA level authenticated within the
last 10 minutes; codes are never shown to a weaker session. An account without any factor
may enrol its first one from a one-factor session (how residents start); that does not
make the session MFA.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from identity.mfa import services as mfa_services
from identity.mfa.models import BackupCode, Passkey, TOTPDevice
from identity.sessions import SESSION_AMR, SESSION_AUTH_TIME
from tests.conftest import MFA_AMR, open_session
from tests.mfa.conftest import (
    ISSUER,
    FakeClock,
    SoftAuthenticator,
    key_from_page,
    post_json,
    register_passkey,
    rfc6238,
    sign_in_password,
)

pytestmark = pytest.mark.django_db

RECENT_REQUIRED = "urn:cum:problem:recent_authentication_required"
CODE_RE = re.compile(r"<code>([A-Z0-9]{5}-[A-Z0-9]{5})</code>")
ONE_FACTOR = [["pwd"], ["hwk"], ["swk"]]
TOTP_ADD = "/compte/securite/application/ajouter/"
BACKUP = "/compte/securite/codes-de-secours/"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("identity.mfa.clock.now", fake)
    return fake


@pytest.fixture
def rp_settings(settings: Any) -> Any:
    settings.ISSUER = ISSUER
    return settings


@pytest.fixture
def victim(resident: Any, clock: FakeClock) -> Any:
    """A resident protected by a TOTP app and backup codes."""
    device, key = mfa_services.totp_enrolment_start(user=resident)
    assert mfa_services.totp_enrolment_confirm(
        user=resident, device_id=device.pk, code=rfc6238(key, clock() - 30), name="Téléphone"
    ).ok
    resident.totp_device_id = device.pk
    resident.totp_key = key
    resident.backup_codes = mfa_services.backup_codes_generate(user=resident)
    return resident


def codes_still_valid(user: Any, codes: list[str]) -> bool:
    return BackupCode.objects.filter(device__user=user, used_at__isnull=True).count() == len(codes)


@pytest.mark.parametrize("amr", ONE_FACTOR)
def test_a_one_factor_session_cannot_add_a_totp_app(amr: list[str], victim: Any, clock: FakeClock) -> None:
    http = open_session(Client(), victim, amr)
    page = http.get(TOTP_ADD)
    assert page.status_code == 302
    assert page["Location"] == "/connexion/?next=%2Fcompte%2Fsecurite%2Fapplication%2Fajouter%2F"
    response = http.post(TOTP_ADD, {"code": "123456", "name": "Attaquant"})
    assert response.status_code == 302
    assert TOTPDevice.objects.filter(user=victim).count() == 1  # no second (unconfirmed) device either


@pytest.mark.parametrize("amr", ONE_FACTOR)
def test_a_one_factor_session_cannot_register_a_passkey(
    amr: list[str], victim: Any, rp_settings: Any
) -> None:
    http = open_session(Client(), victim, amr)
    assert http.get("/compte/securite/cles/ajouter/").status_code == 302
    options = post_json(http, "/compte/securite/cles/options/")
    assert options.status_code == 403 and options.json()["type"] == RECENT_REQUIRED
    assert options["Content-Type"] == "application/problem+json"
    # Even with options obtained while the account had no factor, registering is refused now.
    response = post_json(http, "/compte/securite/cles/enregistrer/", {"credential": {}, "name": "x"})
    assert response.status_code == 403 and response.json()["type"] == RECENT_REQUIRED
    assert not Passkey.objects.filter(user=victim).exists()


@pytest.mark.parametrize("amr", ONE_FACTOR)
def test_a_one_factor_session_cannot_regenerate_or_see_backup_codes(
    amr: list[str], victim: Any, clock: FakeClock
) -> None:
    http = open_session(Client(), victim, amr)
    response = http.post(BACKUP)
    assert response.status_code == 302 and response["Location"].startswith("/connexion/?next=")
    assert CODE_RE.findall(http.get(BACKUP).content.decode()) == []
    assert codes_still_valid(victim, victim.backup_codes)
    clock.advance(5)
    assert mfa_services.backup_code_use(
        user=victim, code=victim.backup_codes[0]
    ).ok  # the victim's still work


@pytest.mark.parametrize("amr", ONE_FACTOR)
def test_a_one_factor_session_cannot_remove_or_rename_factors(amr: list[str], victim: Any) -> None:
    http = open_session(Client(), victim, amr)
    base = f"/compte/securite/totp/{victim.totp_device_id}"
    assert http.post(f"{base}/supprimer/").status_code == 302
    assert http.post(f"{base}/renommer/", {"name": "Attaquant"}).status_code == 302
    device = TOTPDevice.objects.get(pk=victim.totp_device_id)
    assert device.name == "Téléphone"


@pytest.mark.parametrize("amr", ONE_FACTOR)
def test_so_a_one_factor_session_cannot_reach_the_mfa_level(
    amr: list[str], victim: Any, clock: FakeClock
) -> None:
    """The end of the attack: with no factor of its own, the step-up cannot be passed."""
    http = open_session(Client(), victim, amr)
    page = http.get(TOTP_ADD)
    assert page.status_code == 302  # no secret of a new app to read
    assert "totp-secret" not in page.content.decode()
    clock.advance(30)
    response = http.post("/connexion/verification/", {"method": "totp", "totp-code": "000000", "next": "/"})
    assert response.status_code == 200
    assert "mfa" not in http.session[SESSION_AMR]


def test_a_passkey_session_cannot_step_up_with_the_same_passkey(
    rp_settings: Any, victim: Any, clock: FakeClock
) -> None:
    """A passkey without user verification is one factor: presenting it twice is still one."""
    authenticator = SoftAuthenticator(user_verification=False)
    owner = open_session(Client(), victim, MFA_AMR)
    assert register_passkey(owner, authenticator).status_code == 200

    http = Client()
    options = post_json(http, "/connexion/cle/options/").json()
    signed = post_json(http, "/connexion/cle/", {"credential": authenticator.get(options)})
    assert signed.status_code == 200
    assert http.session[SESSION_AMR] == ["hwk"]
    options = post_json(http, "/connexion/verification/cle/options/")
    assert options.status_code == 400
    response = post_json(http, "/connexion/verification/cle/", {"credential": {}, "next": "/"})
    assert response.status_code == 400
    assert http.session[SESSION_AMR] == ["hwk"]
    # With the TOTP app (another factor), the step-up works.
    clock.advance(30)
    http.post("/connexion/verification/", {"method": "totp", "totp-code": rfc6238(victim.totp_key, clock())})
    assert http.session[SESSION_AMR] == ["hwk", "otp", "mfa"]


def test_a_recent_mfa_session_manages_factors_then_is_asked_again_after_ten_minutes(
    victim: Any, clock: FakeClock
) -> None:
    http = open_session(Client(), victim, MFA_AMR)
    page = http.get(TOTP_ADD)
    assert page.status_code == 200
    key = key_from_page(page.content.decode())
    response = http.post(TOTP_ADD, {"code": rfc6238(key, clock()), "name": "Tablette"})
    assert response.status_code == 302 and response["Location"] == "/compte/securite/"
    assert TOTPDevice.objects.filter(user=victim, confirmed=True).count() == 2
    codes = CODE_RE.findall(http.post(BACKUP).content.decode())
    assert len(codes) == 10

    session = http.session  # ten minutes and one second later
    session[SESSION_AUTH_TIME] = int(session[SESSION_AUTH_TIME]) - (10 * 60 + 1)
    session.save()
    response = http.post(BACKUP)
    assert response.status_code == 302 and response["Location"].startswith("/connexion/?next=")
    assert http.get(TOTP_ADD).status_code == 302
    # Re-authenticating with the second factor (step-up) opens it again.
    clock.advance(30)
    http.post("/connexion/verification/", {"method": "totp", "totp-code": rfc6238(victim.totp_key, clock())})
    assert len(CODE_RE.findall(http.post(BACKUP).content.decode())) == 10


def test_without_any_factor_a_one_factor_session_enrols_its_first(resident: Any, clock: FakeClock) -> None:
    http = open_session(Client(), resident, ["pwd"])
    page = http.get(TOTP_ADD)
    assert page.status_code == 200
    key = key_from_page(page.content.decode())
    response = http.post(TOTP_ADD, {"code": rfc6238(key, clock())})
    assert response.status_code == 302
    assert TOTPDevice.objects.filter(user=resident, confirmed=True).count() == 1
    assert http.session[SESSION_AMR] == ["pwd"]  # enrolling is not an MFA sign-in
    # Now that there is a factor, a second one needs the MFA level.
    assert http.get(TOTP_ADD).status_code == 302


def test_the_totp_confirmation_is_checked_again_when_a_factor_appeared_meanwhile(
    resident: Any, clock: FakeClock
) -> None:
    http = open_session(Client(), resident, ["pwd"])
    key = key_from_page(http.get(TOTP_ADD).content.decode())
    # Meanwhile, the account gets a factor (from another, MFA, session).
    device, other_key = mfa_services.totp_enrolment_start(user=resident)
    assert mfa_services.totp_enrolment_confirm(
        user=resident, device_id=device.pk, code=rfc6238(other_key, clock() - 30)
    ).ok
    response = http.post(TOTP_ADD, {"code": rfc6238(key, clock())})
    assert response.status_code == 302 and response["Location"].startswith("/connexion/?next=")
    assert TOTPDevice.objects.filter(user=resident, confirmed=True).count() == 1


def test_another_persons_sign_in_drops_a_half_finished_second_step(
    victim: Any, make_resident: Any, client: Client
) -> None:
    """Same class, found while fixing finding 9: on a shared computer, A types their password
    and walks away at the second step; B signs in with a password alone. The browser must not
    keep offering A's second step to B's session (it took precedence over B's own step-up)."""
    other = make_resident("dominique@example.org")
    assert sign_in_password(client, victim.email)["Location"] == "/connexion/verification/"
    assert sign_in_password(client, other.email).status_code == 302
    page = client.get("/connexion/verification/")
    # B has no second factor: the step-up page says so, instead of A's code form.
    assert page.status_code == 403
    assert "mfa.pending" not in client.session
