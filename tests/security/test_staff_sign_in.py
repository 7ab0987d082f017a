"""Issue 9, finding 1: staff sign in through the one sign-in page, with a second factor.

The attack: `/admin/login/` was Django's own login page (no limits, no second factor, no
audit); 30 wrong passwords then the right one gave a DPO who had a TOTP app a full staff
session, and `/dpo/` and `/dpo/api/v1/events` answered 200.

Required and tested here: the admin's login sends to `/connexion/`; every staff page and
API needs a session at the MFA level; a staff member without a factor is sent to enrol
one at sign-in; sensitive operator actions (factor reset, partner client changes, DPO
exports) need a sign-in at the MFA level within the last 10 minutes ("sudo mode");
staff sign-ins and every staff read or action are audited, by id.
"""

from __future__ import annotations

import io
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client

from identity.mfa import services as mfa_services
from identity.mfa.models import TOTPDevice
from identity.models import AuditEvent, User
from identity.oidc.models import Client as PartnerClient
from identity.sessions import SESSION_AMR
from tests.conftest import MFA_AMR, PASSWORD, open_session
from tests.mfa.conftest import ISSUER, FakeClock, SoftAuthenticator, key_from_page, register_passkey, rfc6238

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
MFA_REQUIRED = "urn:cum:problem:mfa_required"
RECENT_REQUIRED = "urn:cum:problem:recent_authentication_required"
STALE = 11 * 60  # older than the 10 minutes of sudo mode


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("identity.mfa.clock.now", fake)
    return fake


def enrol_totp(user: Any, clock: FakeClock) -> bytes:
    device, key = mfa_services.totp_enrolment_start(user=user)
    assert mfa_services.totp_enrolment_confirm(
        user=user, device_id=device.pk, code=rfc6238(key, clock() - 30), name="Téléphone"
    ).ok
    return key


def make_staff(make_resident: Any, email: str, *, groups: tuple[str, ...] = (), staff: bool = True) -> User:
    user = make_resident(email)
    user.is_staff = staff
    user.save(update_fields=["is_staff"])
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def dpo(make_resident: Any) -> User:
    return make_staff(make_resident, "dpo@nantesmetropole.fr", groups=("dpo",))


@pytest.fixture
def superuser(db: Any) -> User:
    return User.objects.create_superuser("admin@nantesmetropole.fr", PASSWORD)


def signed_in(http: Client) -> bool:
    return "_auth_user_id" in http.session


def assert_problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["type"] == type_ and body["status"] == status
    return body


# --- one sign-in for everyone -------------------------------------------------------------------


def test_the_admin_login_page_sends_to_the_one_sign_in(db: Any) -> None:
    response = Client().get("/admin/login/?next=/admin/identity/user/")
    assert response.status_code == 302
    assert response["Location"] == "/connexion/?next=" + quote("/admin/identity/user/", safe="")
    # The admin index sends anonymous visitors there too, through the admin's login.
    first = Client().get("/admin/", follow=True)
    assert first.redirect_chain[-1][0].startswith("/connexion/?next=")


def test_thirty_wrong_passwords_at_admin_login_open_no_session(dpo: User, clock: FakeClock) -> None:
    """The review's attack, replayed: nothing at /admin/login/ checks a password any more."""
    enrol_totp(dpo, clock)
    http = Client()
    for attempt in range(30):
        http.post("/admin/login/", {"username": dpo.email, "password": f"wrong {attempt}"})
    response = http.post("/admin/login/?next=/admin/", {"username": dpo.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")
    assert not signed_in(http)
    assert http.get("/dpo/").status_code == 302
    assert http.get("/dpo/api/v1/events").status_code == 403
    assert http.get("/admin/").status_code == 302


def test_admin_login_for_a_signed_in_resident_is_refused(make_resident: Any) -> None:
    http = open_session(Client(), make_resident("camille@example.org"), MFA_AMR)
    assert http.get("/admin/login/?next=/admin/").status_code == 403
    response = http.get("/admin/identity/user/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- staff pages and API need a session at the MFA level ------------------------------------------


@pytest.mark.parametrize("amr", [["pwd"], ["hwk"], ["swk"], ["pwd", "otp"]])
def test_a_one_factor_staff_session_gets_no_staff_page(
    amr: list[str], dpo: User, superuser: User, clock: FakeClock
) -> None:
    """A password-only, FranceConnect-like or passkey-without-user-verification session."""
    dpo.is_superuser = True
    dpo.save(update_fields=["is_superuser"])
    enrol_totp(dpo, clock)
    http = open_session(Client(), dpo, amr)
    for path in [
        "/admin/",
        "/admin/identity/user/",
        "/admin/identity/client/",
        "/admin/identity/auditevent/",
    ]:
        response = http.get(path)
        assert response.status_code == 302, path
        assert "/admin/login/" in response["Location"], path
    # Following the admin's login lands on the sign-in page (password + second factor).
    response = http.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/connexion/?next=%2Fadmin%2F"
    for path in ["/dpo/", "/dpo/statistiques/", "/dpo/registre/", "/dpo/verification/"]:
        response = http.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/connexion/?next="), path
    for path in ["/dpo/api/v1/events", "/dpo/api/v1/stats", "/dpo/api/v1/register", "/dpo/api/v1/tree-head"]:
        assert_problem(http.get(path), 403, MFA_REQUIRED)
    assert_problem(http.post("/dpo/api/v1/verify"), 403, MFA_REQUIRED)
    assert_problem(http.post("/dpo/api/v1/tree-head"), 403, MFA_REQUIRED)


def test_an_mfa_staff_session_gets_the_staff_pages(dpo: User, clock: FakeClock) -> None:
    dpo.is_superuser = True
    dpo.save(update_fields=["is_superuser"])
    enrol_totp(dpo, clock)
    http = open_session(Client(), dpo, MFA_AMR)
    for path in ["/admin/", "/admin/identity/user/", "/dpo/", "/dpo/statistiques/"]:
        assert http.get(path).status_code == 200, path
    assert http.get("/dpo/api/v1/events").status_code == 200


def test_staff_sign_in_with_password_then_code_reaches_the_console(dpo: User, clock: FakeClock) -> None:
    key = enrol_totp(dpo, clock)
    http = Client()
    response = http.post("/connexion/?next=/dpo/", {"username": dpo.email, "password": PASSWORD})
    assert response["Location"] == "/connexion/verification/"
    assert not signed_in(http)
    clock.advance(30)
    response = http.post("/connexion/verification/", {"method": "totp", "totp-code": rfc6238(key, clock())})
    assert response.status_code == 302 and response["Location"] == "/dpo/"
    assert http.get("/dpo/").status_code == 200
    event = AuditEvent.objects.get(event="staff.signed_in")
    assert event.acting_user_id == dpo.pk and event.subject_user_id == dpo.pk
    assert event.data["mfa"] is True and event.data["amr"] == ["pwd", "otp", "mfa"]
    assert set(event.data) <= {"mfa", "amr", "session"}  # ids and methods, no personal data


# --- a staff member without a factor enrols one at first sign-in -----------------------------------


def test_create_dpo_makes_a_dpo_who_enrols_a_factor_at_first_sign_in(db: Any, clock: FakeClock) -> None:
    out = io.StringIO()
    call_command("create_dpo", "--email", "new.dpo@nantesmetropole.fr", stdout=out)
    assert "second factor" in out.getvalue()
    user = User.objects.get(email="new.dpo@nantesmetropole.fr")
    user.set_password(PASSWORD)  # what "Mot de passe oublié" does
    user.save(update_fields=["password"])

    http = Client()
    response = http.post("/connexion/?next=/dpo/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/compte/securite/"
    assert http.session[SESSION_AMR] == ["pwd"]
    # Until a factor is enrolled and used, no staff page opens: they all lead to enrolment.
    for path in ["/dpo/registre/", "/dpo/"]:
        response = http.get(path)
        assert response.status_code == 302 and response["Location"] == "/compte/securite/", path
    assert_problem(http.get("/dpo/api/v1/events"), 403, MFA_REQUIRED)

    page = http.get("/compte/securite/application/ajouter/")
    key = key_from_page(page.content.decode())
    response = http.post("/compte/securite/application/ajouter/", {"code": rfc6238(key, clock())})
    # Enrolling is not signing in with the factor: the next step asks for a code.
    assert response.status_code == 302
    assert response["Location"] == "/connexion/verification/?next=%2Fdpo%2F"
    assert http.get("/dpo/").status_code == 302
    clock.advance(30)
    response = http.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(key, clock()), "next": "/dpo/"}
    )
    assert response["Location"] == "/dpo/"
    assert http.get("/dpo/").status_code == 200


def test_a_support_member_made_in_the_admin_enrols_at_first_sign_in(
    make_resident: Any, superuser: User, clock: FakeClock
) -> None:
    enrol_totp(superuser, clock)
    admin = open_session(Client(), superuser, MFA_AMR)
    agent = make_resident("agent@nantesmetropole.fr")
    support = Group.objects.get_or_create(name="support")[0]
    change = admin.get(f"/admin/identity/user/{agent.pk}/change/")
    assert change.status_code == 200
    form = {
        "email": agent.email,
        "email_verified": "on",
        "given_name": agent.given_name,
        "family_name": agent.family_name,
        "preferred_language": agent.preferred_language or "fr",
        "is_active": "on",
        "is_staff": "on",
        "groups": [str(support.pk)],
    }
    response = admin.post(f"/admin/identity/user/{agent.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    agent.refresh_from_db()
    assert agent.is_staff and agent.groups.filter(name="support").exists()

    http = Client()
    response = http.post("/connexion/?next=/admin/", {"username": agent.email, "password": PASSWORD})
    assert response["Location"] == "/compte/securite/"
    response = http.get("/admin/login/?next=/admin/")
    assert response["Location"] == "/compte/securite/"


def test_staff_may_not_remove_their_last_factor(dpo: User, clock: FakeClock) -> None:
    enrol_totp(dpo, clock)
    device = TOTPDevice.objects.get(user=dpo)
    http = open_session(Client(), dpo, MFA_AMR)
    response = http.post(f"/compte/securite/totp/{device.pk}/supprimer/")
    assert response.status_code == 302
    assert TOTPDevice.objects.filter(pk=device.pk).exists()


# --- sudo mode: recent authentication for sensitive operator actions ---------------------------------


@pytest.fixture
def protected_resident(make_resident: Any, clock: FakeClock) -> User:
    resident = make_resident("resident@example.org")
    enrol_totp(resident, clock)
    return resident


@pytest.fixture
def support_operator(make_resident: Any, clock: FakeClock) -> User:
    operator = make_staff(make_resident, "support@nantesmetropole.fr", groups=("support",))
    operator.user_permissions.add(Permission.objects.get(codename="view_user"))
    enrol_totp(operator, clock)
    return operator


def test_factor_reset_needs_a_recent_authentication(
    protected_resident: User, support_operator: User, clock: FakeClock
) -> None:
    http = open_session(Client(), support_operator, MFA_AMR, age=STALE)
    assert http.get("/admin/identity/user/").status_code == 200  # reading: an MFA session is enough
    selection = {"action": "reset_second_factor", "_selected_action": [str(protected_resident.pk)]}
    response = http.post("/admin/identity/user/", {**selection, "confirm": "yes", "reason": "ticket 7"})
    assert response.status_code == 302
    assert response["Location"] == "/connexion/?next=%2Fadmin%2Fidentity%2Fuser%2F"
    assert TOTPDevice.objects.filter(user=protected_resident).exists()
    assert not AuditEvent.objects.filter(event="mfa.factors_reset").exists()

    fresh = open_session(Client(), support_operator, MFA_AMR)
    response = fresh.post("/admin/identity/user/", {**selection, "confirm": "yes", "reason": "ticket 7"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=protected_resident).exists()


def _client_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "name": "Médiathèque",
        "client_type": "confidential",
        "grant_types": "authorization_code",
        "allowed_scopes": "openid profile",
        "redirect_uris": "https://media.example.org/cb",
        "post_logout_redirect_uris": "",
        "token_endpoint_auth_method": "client_secret_basic",
        "jwks": "",
        "jwks_uri": "",
        "algorithm": "RS256",
        "contacts": "",
    }
    form.update(overrides)
    return form


def test_partner_client_changes_need_a_recent_authentication(
    superuser: User, clock: FakeClock, rp: Any, signing_keys: Any
) -> None:
    enrol_totp(superuser, clock)
    stale = open_session(Client(), superuser, MFA_AMR, age=STALE)
    assert stale.get("/admin/identity/client/").status_code == 200
    before = PartnerClient.objects.count()
    for path, data in [
        ("/admin/identity/client/add/", _client_form()),
        (f"/admin/identity/client/{rp.client.pk}/change/", _client_form(name="Renamed")),
        (f"/admin/identity/client/{rp.client.pk}/delete/", {"post": "yes"}),
        (
            "/admin/identity/client/",
            {"action": "regenerate_secret", "_selected_action": [str(rp.client.pk)]},
        ),
        ("/admin/identity/client/", {"action": "delete_selected", "_selected_action": [str(rp.client.pk)]}),
    ]:
        response = stale.post(path, data)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/connexion/?next="), path
    assert stale.get("/admin/identity/client/add/")["Location"].startswith("/connexion/?next=")
    rp.client.refresh_from_db()
    assert PartnerClient.objects.count() == before and rp.client.name != "Renamed"
    assert not AuditEvent.objects.exclude(client_id=rp.client_id).filter(event__startswith="client.").exists()
    assert not AuditEvent.objects.filter(event="client.secret_regenerated").exists()
    assert (
        AuditEvent.objects.filter(
            event="staff.refused", data__reason="recent_authentication_required"
        ).count()
        == 6
    )

    fresh = open_session(Client(), superuser, MFA_AMR)
    response = fresh.post(
        "/admin/identity/client/", {"action": "regenerate_secret", "_selected_action": [str(rp.client.pk)]}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/identity/client/"
    assert AuditEvent.objects.filter(event="client.secret_regenerated").exists()


def test_dpo_exports_need_a_recent_authentication(dpo: User, clock: FakeClock) -> None:
    enrol_totp(dpo, clock)
    stale = open_session(Client(), dpo, MFA_AMR, age=STALE)
    assert stale.get("/dpo/").status_code == 200  # the console itself: an MFA session is enough
    for path in ["/dpo/export.csv", "/dpo/export.json", "/dpo/registre/"]:
        response = stale.get(path)
        assert response.status_code == 302, path
        assert response["Location"] == "/connexion/?next=" + quote(path, safe=""), path
    body = assert_problem(stale.get("/dpo/api/v1/register"), 403, RECENT_REQUIRED)
    assert body["reauthenticate"].startswith("/connexion/?next=")

    fresh = open_session(Client(), dpo, MFA_AMR)
    assert fresh.get("/dpo/export.csv").status_code == 200
    assert fresh.get("/dpo/export.json").status_code == 200
    assert fresh.get("/dpo/registre/").status_code == 200
    assert fresh.get("/dpo/api/v1/register").status_code == 200


def test_sudo_mode_re_authentication_is_password_and_second_factor(dpo: User, clock: FakeClock) -> None:
    key = enrol_totp(dpo, clock)
    http = open_session(Client(), dpo, MFA_AMR, age=STALE)
    response = http.get("/dpo/export.json")
    login = response["Location"]
    assert login == "/connexion/?next=%2Fdpo%2Fexport.json"
    response = http.post(login, {"username": dpo.email, "password": PASSWORD})
    assert response["Location"] == "/connexion/verification/"
    assert http.get("/dpo/export.json").status_code == 302  # the password alone is not enough
    clock.advance(30)
    response = http.post("/connexion/verification/", {"method": "totp", "totp-code": rfc6238(key, clock())})
    assert response["Location"] == "/dpo/export.json"
    assert http.get("/dpo/export.json").status_code == 200


# --- audit of staff reads and actions ------------------------------------------------------------


def test_staff_reads_and_actions_are_audited_by_id(
    superuser: User, dpo: User, protected_resident: User, clock: FakeClock
) -> None:
    admin = open_session(Client(), superuser, MFA_AMR)
    admin.get("/admin/identity/user/?q=resident%40example.org")
    admin.get(f"/admin/identity/user/{protected_resident.pk}/change/")
    reads = AuditEvent.objects.filter(event="staff.request", acting_user_id=superuser.pk).order_by("pk")
    assert [event.data["view"] for event in reads] == [
        "admin:identity_user_changelist",
        "admin:identity_user_change",
    ]
    assert reads[1].data["object"] == str(protected_resident.pk)
    assert reads[1].data["method"] == "GET" and reads[1].data["status"] == 200
    for event in reads:
        assert "resident@example.org" not in str(event.data) and "resident%40" not in str(event.data)

    console = open_session(Client(), dpo, MFA_AMR)
    console.get("/dpo/statistiques/")
    console.get("/dpo/api/v1/stats")
    views = list(
        AuditEvent.objects.filter(event="staff.request", acting_user_id=dpo.pk)
        .order_by("pk")
        .values_list("data__view", flat=True)
    )
    assert views == ["consent:dpo:stats", "consent:dpo-api:stats"]


def test_refused_staff_requests_are_audited_too(dpo: User, clock: FakeClock) -> None:
    enrol_totp(dpo, clock)
    http = open_session(Client(), dpo, ["pwd"])
    http.get("/dpo/")
    http.get("/dpo/api/v1/events")
    refused = AuditEvent.objects.filter(event="staff.refused", acting_user_id=dpo.pk).order_by("pk")
    assert [event.data["reason"] for event in refused] == ["mfa_required", "mfa_required"]


def test_a_staff_member_without_a_password_re_authenticates_with_the_step_up(
    dpo: User, clock: FakeClock
) -> None:
    """E.g. a DPO who signs in through FranceConnect: the second factor is asked for alone."""
    key = enrol_totp(dpo, clock)
    dpo.set_unusable_password()
    dpo.save(update_fields=["password"])
    http = open_session(Client(), dpo, ["pwd"])
    response = http.get("/dpo/")
    assert response["Location"] == "/connexion/verification/?next=%2Fdpo%2F"
    clock.advance(30)
    response = http.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(key, clock()), "next": "/dpo/"}
    )
    assert response["Location"] == "/dpo/"
    assert http.session[SESSION_AMR] == ["pwd", "otp", "mfa"]
    assert http.get("/dpo/").status_code == 200
    assert http.get("/dpo/export.json").status_code == 200  # just signed in with the factor: recent


def test_the_admin_login_page_lets_an_mfa_session_through_and_its_own_pages_are_ours(
    superuser: User, clock: FakeClock
) -> None:
    http = open_session(Client(), superuser, MFA_AMR)
    response = http.get("/admin/login/?next=/admin/identity/user/")
    assert response["Location"] == "/admin/identity/user/"
    assert http.get("/admin/login/?next=https://evil.example/")["Location"] == "/admin/"
    assert http.get("/admin/password_change/")["Location"] == "/compte/mot-de-passe/"
    response = http.post("/admin/logout/")
    assert response.status_code == 302 and response["Location"] == "/deconnexion/"


def test_staff_requests_that_fail_are_audited_with_their_status(dpo: User) -> None:
    http = open_session(Client(), dpo, MFA_AMR)
    missing = uuid.uuid4()
    assert http.get(f"/dpo/evenements/{missing}/").status_code == 404
    assert http.get(f"/dpo/api/v1/events/{missing}").status_code == 404
    rows = AuditEvent.objects.filter(event="staff.request", acting_user_id=dpo.pk).order_by("pk")
    assert [(row.data["view"], row.data["object"], row.data["status"]) for row in rows] == [
        ("consent:dpo:event", str(missing), 404),
        ("consent:dpo-api:event", str(missing), 404),
    ]


def test_account_changes_in_the_admin_need_a_recent_authentication(
    superuser: User, make_resident: Any, clock: FakeClock
) -> None:
    """Granting staff status or groups, creating, deleting accounts, setting a password."""
    agent = make_resident("agent@nantesmetropole.fr")
    new_account = {"email": "new@example.org", "password1": "x" * 20, "password2": "x" * 20}
    stale = open_session(Client(), superuser, MFA_AMR, age=STALE)
    assert stale.get(f"/admin/identity/user/{agent.pk}/change/").status_code == 200  # reading
    form = {"email": agent.email, "is_active": "on", "is_staff": "on", "is_superuser": "on"}
    for path, data in [
        (f"/admin/identity/user/{agent.pk}/change/", form),
        (f"/admin/identity/user/{agent.pk}/delete/", {"post": "yes"}),
        (f"/admin/identity/user/{agent.pk}/password/", {"password1": "x" * 20, "password2": "x" * 20}),
        ("/admin/identity/user/add/", new_account),
    ]:
        response = stale.post(path, data)
        assert response.status_code == 302 and response["Location"].startswith("/connexion/?next="), path
    agent.refresh_from_db()
    assert not agent.is_staff and not agent.is_superuser and agent.check_password(PASSWORD)
    assert not User.objects.filter(email="new@example.org").exists()


def test_a_staff_member_may_enrol_a_passkey_instead(dpo: User, settings: Any) -> None:
    settings.ISSUER = ISSUER
    http = open_session(Client(), dpo, ["pwd"])
    assert http.get("/dpo/statistiques/")["Location"] == "/compte/securite/"
    response = register_passkey(http, SoftAuthenticator(user_verification=False))
    assert response.status_code == 200
    assert response.json() == {"redirect": "/connexion/verification/?next=%2Fdpo%2Fstatistiques%2F"}
    assert http.get("/dpo/statistiques/").status_code == 302  # not before signing in with it


def test_resident_sign_ins_are_not_staff_sign_ins(make_resident: Any) -> None:
    resident = make_resident("camille@example.org")
    response = Client().post("/connexion/", {"username": resident.email, "password": PASSWORD})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(event="login.succeeded", subject_user_id=resident.pk).exists()
    assert not AuditEvent.objects.filter(event="staff.signed_in").exists()
