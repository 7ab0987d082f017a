"""The data-rights registry (consent.rights): coverage, export and erasure across every app.

- Every model with a foreign key (or one-to-one) to the user model, ours and third-party
  apps' alike, is declared by a provider.
- A resident with data in every app: the export has each section and no secret; the
  erasure removes or neutralises each, tells the partners, keeps the consent proof
  pseudonymised (the ledger still verifies) and the audit rows.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import AnonymousUser
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.test import Client as BrowserClient
from django.utils import timezone
from oauth2_provider.models import DeviceGrant

from connectors.handlers import EMAIL
from connectors.models import OutboxMessage
from consent import crypto, rights
from consent.models import LedgerEvent, Subject
from consent.selectors import event_details, ledger_verify
from consent.services import consent_record, resident_decision_record
from identity.franceconnect.models import FranceConnectLink
from identity.franceconnect.services import link_create
from identity.mfa import services as mfa_services
from identity.mfa.models import BackupCode, BackupCodeDevice, Passkey, TOTPDevice
from identity.models import AuditEvent, BrowserSession, EmailVerification, User
from identity.oidc.backchannel import KIND as BACKCHANNEL_LOGOUT
from identity.oidc.internal_notice import internal_notice_record
from identity.oidc.models import (
    AccessToken,
    AuthorizationCode,
    Client,
    IDToken,
    InternalServiceNotice,
    RefreshToken,
)
from identity.services import email_verification_send, password_reset_request, user_create
from identity.sessions import sessions_end_all
from profiles.models import DeclaredProfile, Interest, InterestCorrection
from profiles.services import declared_update, interest_correct, page_view_record, subject_of
from tests.conftest import PASSWORD, OIDCFlow
from tests.mfa.conftest import rfc6238
from tests.oidc.conftest import complete_flow, userinfo

FC_SUB = "b6048e95bb134ec5b1d1e1fa69f287172e91722b9354d637a1bcf2ebb0fd2ef5v1"


# --- coverage ----------------------------------------------------------------------------------


def models_pointing_at_the_user() -> set[str]:
    """Every installed model (auto-created many-to-many tables included) with a foreign key
    or one-to-one field to settings.AUTH_USER_MODEL, directly."""
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    found = set()
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.get_fields():
            if (
                getattr(field, "concrete", False)
                and field.is_relation
                and (field.many_to_one or field.one_to_one)
                and field.related_model is user_model
            ):
                found.add(model._meta.label)
    return found


def uncovered(pointing: set[str], covered: dict[str, list[str]]) -> set[str]:
    return {label for label in pointing if label not in covered}


def test_every_model_with_a_foreign_key_to_the_user_is_covered_by_a_provider() -> None:
    pointing = models_pointing_at_the_user()
    # Not vacuous: ours and third-party apps' models are found (django-otp's devices are
    # ours, subclassing its abstract Device; its plugins' models are not installed).
    assert {
        "identity.BrowserSession",
        "identity.AccessToken",
        "mfa.TOTPDevice",
        "mfa.Passkey",
        "franceconnect.FranceConnectLink",
        "consent.Subject",
        "admin.LogEntry",
        "oauth2_provider.DeviceGrant",
        "identity.User_groups",
    } <= pointing
    assert uncovered(pointing, rights.covered_models()) == set(), "declare these in a rights provider"


def test_the_coverage_check_catches_a_model_no_provider_declares() -> None:
    covered = rights.covered_models()
    del covered["mfa.Passkey"]
    assert uncovered(models_pointing_at_the_user(), covered) == {"mfa.Passkey"}


def test_every_declared_model_exists_and_is_declared_once() -> None:
    for label, names in rights.covered_models().items():
        assert apps.get_model(label) is not None
        assert len(names) == 1, f"{label} declared by {names}"
    # Sessions have no foreign key to the user: they end with the browser sessions.
    assert rights.covered_models()["sessions.Session"] == ["identity"]


def test_providers_run_partners_first_and_the_account_last() -> None:
    assert [provider.name for provider in rights.providers()] == [
        "oidc",
        "mfa",
        "franceconnect",
        "connectors",
        "connectors_scim",
        "profiles",
        "consent",
        "identity",
    ]


def test_a_declaration_that_is_not_a_model_label_is_refused() -> None:
    with pytest.raises(rights.RightsError):
        rights.register_provider("bad", export=dict, erase=dict, models=["BrowserSession"])
    assert "bad" not in [provider.name for provider in rights.providers()]


# --- a resident with data in every app ---------------------------------------------------------


class Everything:
    """What the resident fixture created, with every secret the archive must not hold."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}


def personalisation_data(resident: Any) -> None:
    """A declared profile, interests inferred from browsing, a correction."""
    for code in ("personalisation-declared", "personalisation-browsing"):
        resident_decision_record(user=resident, purpose_code=code, grant=True)
    declared_update(user=resident, changes={"commune": "44109", "themes": ["culture"], "language": "fr"})
    views = (("www.nantes.fr", "sport"), ("metropole.nantes.fr", "sport"), ("www.nantes.fr", "housing"))
    for site, theme in views:
        page_view_record(subject=subject_of(resident), site=site, themes=[theme], viewed_at=timezone.now())
    interest_correct(subject=subject_of(resident), theme="housing")


@pytest.fixture
def everything(make_resident: Any, make_client: Any, signing_keys: Any) -> Any:
    made = Everything()
    resident = make_resident("dominique@example.org", email_verified=False)
    made.user = resident
    email_verification_send(user=resident)  # a verification link (and a queued email)
    User.objects.filter(pk=resident.pk).update(email_verified=True, phone_number="+33240000000")
    resident.refresh_from_db()

    browser = BrowserClient()
    response = browser.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    assert response.status_code == 302
    made.browser = browser
    made.session_key = browser.session.session_key

    # A partner with back-channel logout: the resident authorizes it (consent, tokens).
    partner = make_client(name="Médiathèques", backchannel_logout_uri="https://mediatheques.example.org/bcl")
    made.partner = partner
    made.tokens = complete_flow(OIDCFlow(browser, partner))
    made.code = OIDCFlow(browser, partner).get_code()  # one code left unredeemed
    # An internal service the resident was informed about; a client the account owns.
    internal = make_client(name="Déchèteries", is_internal=True).client
    with transaction.atomic():
        internal_notice_record(user=resident, client=internal, scopes=["openid", "email"])
    owned = make_client(name="Client interne de test")
    Client.objects.filter(pk=owned.client.pk).update(user=resident)
    made.owned = owned.client
    DeviceGrant.objects.create(
        user=resident,
        client_id=partner.client_id,
        device_code="device-code-secret-0123456789",
        user_code="USER-CODE-98",
        scope="openid",
        expires=timezone.now() + timedelta(minutes=5),
        status="authorized",
    )

    # Second factors.
    device, totp_key = mfa_services.totp_enrolment_start(user=resident)
    assert mfa_services.totp_enrolment_confirm(
        user=resident, device_id=device.pk, code=rfc6238(totp_key, time.time()), name="Téléphone"
    ).ok
    backup_codes = mfa_services.backup_codes_generate(user=resident)
    Passkey.objects.create(
        user=resident,
        name="Clé USB",
        credential_id="Y3JlZGVudGlhbC1pZC1zZWNyZXQtdmFsdWU",
        public_key=b"\xa5public-key-cose",
        user_handle="dXNlci1oYW5kbGUtdmFsdWU",
        transports=["usb"],
    )

    link_create(user=resident, sub=FC_SUB, how="test")
    consent_record(
        user=resident,
        purpose_code="service-news-email",
        event_type="given",
        collection_method="web_form",
        details={"note": "inscrite au salon"},
    )
    password_reset_request(user=resident)  # an email queued to the resident
    personalisation_data(resident)
    LogEntry.objects.create(
        user=resident,
        content_type=ContentType.objects.get_for_model(Client),
        object_id=str(owned.client.pk),
        object_repr="Client interne de test (private text)",
        action_flag=CHANGE,
        change_message="changed the name of someone else",
    )

    resident.refresh_from_db()
    made.emails_queued = OutboxMessage.objects.filter(kind=EMAIL).count()
    secrets = made.secrets
    secrets["password hash"] = resident.password
    secrets["totp key (base32)"] = base64.b32encode(totp_key).decode().rstrip("=")
    secrets["totp key (hex)"] = totp_key.hex()
    secrets["totp secret (encrypted)"] = base64.b64encode(
        bytes(TOTPDevice.objects.get(pk=device.pk).secret_encrypted)
    ).decode()
    for index, code in enumerate(backup_codes):
        secrets[f"backup code {index}"] = code
        secrets[f"backup code {index} (plain)"] = code.replace("-", "")
    for index, code_hash in enumerate(BackupCode.objects.values_list("code_hash", flat=True)):
        secrets[f"backup code hash {index}"] = code_hash
    secrets["passkey credential id"] = "Y3JlZGVudGlhbC1pZC1zZWNyZXQtdmFsdWU"
    secrets["passkey user handle"] = "dXNlci1oYW5kbGUtdmFsdWU"
    secrets["access token"] = made.tokens["access_token"]
    secrets["refresh token"] = made.tokens["refresh_token"]
    secrets["id token"] = made.tokens["id_token"]
    secrets["authorization code"] = made.code
    for model in (AccessToken, RefreshToken):
        for row in model.objects.filter(user=resident):
            for column in ("token", "token_checksum"):
                if getattr(row, column):
                    secrets[f"{model.__name__} {row.pk} {column}"] = getattr(row, column)
    for row in IDToken.objects.filter(user=resident):
        secrets[f"id token jti {row.pk}"] = str(row.jti)
    for row in AuthorizationCode.objects.filter(user=resident):
        secrets[f"code hash {row.pk}"] = row.code
    secrets["partner client secret"] = partner.secret
    secrets["device code"] = "device-code-secret-0123456789"
    secrets["user code"] = "USER-CODE-98"
    for session in BrowserSession.objects.filter(user=resident):
        secrets[f"sid {session.pk}"] = session.sid
    secrets["django session key"] = made.session_key
    for verification in EmailVerification.objects.filter(user=resident):
        secrets[f"verification token hash {verification.pk}"] = verification.token_hash
    for index, ip_hash in enumerate(
        AuditEvent.objects.filter(subject_user_id=resident.pk)
        .exclude(ip_hash="")
        .values_list("ip_hash", flat=True)
    ):
        secrets[f"audit ip hash {index}"] = ip_hash
    for message in OutboxMessage.objects.filter(kind=EMAIL):
        secrets[f"sealed email {message.pk}"] = message.payload["sealed"]
    secrets["admin object text"] = "private text"
    secrets["admin change message"] = "someone else"
    for subject in Subject.objects.filter(user=resident):
        secrets[f"wrapped key {subject.pk}"] = base64.b64encode(bytes(subject.wrapped_key)).decode()
    return made


def test_the_export_holds_every_section_and_no_secret(everything: Any) -> None:
    resident = everything.user
    archive = rights.rights_export(resident)
    text = json.dumps(archive, ensure_ascii=False)
    assert json.loads(text) == archive

    assert archive["format"] == rights.EXPORT_FORMAT and archive["version"] == rights.EXPORT_VERSION
    assert archive["user_id"] == str(resident.pk)
    sections = archive["sections"]
    assert set(sections) == {
        "oidc",
        "mfa",
        "franceconnect",
        "connectors",
        "connectors_scim",
        "profiles",
        "consent",
        "identity",
    }

    identity = sections["identity"]
    assert identity["account"]["email"] == "dominique@example.org"
    assert identity["account"]["phone_number"] == "+33240000000"
    assert identity["account"]["has_password"] is True
    assert len(identity["sessions"]) == 1 and identity["sessions"][0]["ended_at"] is None
    assert identity["email_verifications"][0]["email"] == "dominique@example.org"
    events = {event["event"] for event in identity["audit_events"]}
    assert {
        "login.succeeded",
        "mfa.factor_added",
        "franceconnect.linked",
        "password.reset_requested",
    } <= events
    assert identity["admin_log"] == [
        {
            "at": identity["admin_log"][0]["at"],
            "action": "change",
            "model": "identity.client",
        }
    ]

    oidc = sections["oidc"]
    client_id = everything.partner.client_id
    assert [link["client_id"] for link in oidc["session_clients"]] == [client_id]
    assert oidc["session_clients"][0]["session"] == identity["sessions"][0]["id"]
    assert {token["client_id"] for token in oidc["access_tokens"]} == {client_id}
    assert {token["client_id"] for token in oidc["refresh_tokens"]} == {client_id}
    assert {token["client_id"] for token in oidc["id_tokens"]} == {client_id}
    assert len(oidc["authorization_codes"]) == 2  # one redeemed, one not
    assert oidc["device_grants"][0]["status"] == "authorized"
    assert oidc["internal_service_notices"][0]["scopes"] == ["email", "openid"]
    assert oidc["owned_clients"] == [
        {"client_id": everything.owned.client_id, "name": "Client interne de test"}
    ]

    mfa = sections["mfa"]
    assert [(factor["name"], factor["confirmed"]) for factor in mfa["totp"]] == [("Téléphone", True)]
    assert mfa["backup_codes"]["total"] == 10 and mfa["backup_codes"]["unused"] == 10
    assert mfa["passkeys"][0]["name"] == "Clé USB" and mfa["passkeys"][0]["transports"] == ["usb"]

    assert sections["franceconnect"]["link"]["sub"] == FC_SUB

    outbox = sections["connectors"]["outbox"]
    assert {message["kind"] for message in outbox} == {EMAIL}  # no logout yet: the session is live
    assert {"verify_email", "password_reset"} <= {message["template"] for message in outbox}
    assert len(outbox) == OutboxMessage.objects.filter(kind=EMAIL).count()

    consent = sections["consent"]
    notes = [event["details"] for event in consent["ledger_events"] if event["details"]]
    assert {"note": "inscrite au salon"} in notes
    assert client_id in {event["partner_client_id"] for event in consent["ledger_events"]}

    profiles = sections["profiles"]
    declared = {field["name"]: field for field in profiles["declared"]["fields"]}
    assert declared["commune"]["value"] == "44109" and declared["commune"]["purpose_granted"] is True
    assert declared["themes"]["purpose"] == "personalisation-declared"
    [sport] = profiles["interests"]
    assert sport["theme"] == "sport" and sport["views"] == 2
    assert [source["site"] for source in sport["sources"]] == ["metropole.nantes.fr", "www.nantes.fr"]
    assert [correction["theme"] for correction in profiles["corrections"]] == ["housing"]

    for what, secret in everything.secrets.items():
        assert secret and secret not in text, f"the export holds the {what}"


def test_the_export_of_a_resident_with_nothing_else_has_empty_sections(make_resident: Any) -> None:
    sections = rights.rights_export(make_resident())["sections"]
    assert sections["mfa"] == {"totp": [], "backup_codes": None, "passkeys": []}
    assert sections["franceconnect"] == {"link": None}
    assert sections["connectors"] == {"links": [], "outbox": []}
    assert sections["oidc"]["access_tokens"] == [] and sections["identity"]["sessions"] == []


def test_an_export_that_is_not_json_is_refused_with_the_providers_name(make_resident: Any) -> None:
    rights.register_provider("broken", export=lambda user: {"at": timezone.now()}, erase=dict)
    try:
        with pytest.raises(rights.RightsError, match="broken"):
            rights.rights_export(make_resident())
    finally:
        rights.unregister_provider("broken")


def test_export_and_erasure_need_a_saved_account(db: Any) -> None:
    for user in (AnonymousUser(), User(email="pas-encore@example.org")):
        with pytest.raises(rights.RightsError):
            rights.rights_export(user)
        with pytest.raises(rights.RightsError):
            rights.rights_erase(user)


# --- erasure -------------------------------------------------------------------------------------


def test_the_erasure_removes_or_neutralises_each_apps_data(everything: Any) -> None:
    resident = everything.user
    user_id = resident.pk
    partner = everything.partner
    consent_events = list(LedgerEvent.objects.filter(subject__user=resident))
    subjects = {event.subject_id for event in consent_events}
    assert {"note": "inscrite au salon"} in [event_details(event) for event in consent_events]
    sids = set(BrowserSession.objects.filter(user=resident).values_list("sid", flat=True))

    report = rights.rights_erase(resident)

    assert [item.provider for item in report.reports] == [
        "oidc",
        "mfa",
        "franceconnect",
        "connectors",
        "connectors_scim",
        "profiles",
        "consent",
        "identity",
    ]
    assert report.user_id == str(user_id)
    assert report.report("profiles").details == {"declared": 1, "interests": 1, "corrections": 1}
    for model in (DeclaredProfile, Interest, InterestCorrection):
        assert not model.objects.filter(user_id=user_id).exists(), model
    json.dumps(report.as_dict())
    assert report.report("oidc").details["sessions_ended"] == 1
    assert report.report("identity").details["sessions_ended"] == 0  # already ended first

    # identity: the account, its sessions (the browser is signed out), verification links.
    assert not User.objects.filter(pk=user_id).exists()
    assert not BrowserSession.objects.filter(sid__in=sids).exists()
    assert not Session.objects.filter(session_key=everything.session_key).exists()
    assert everything.browser.get("/compte/").status_code == 302
    assert not EmailVerification.objects.filter(user_id=user_id).exists()
    assert not LogEntry.objects.filter(user_id=user_id).exists()
    # ... the address can open a new account.
    user_create(email="dominique@example.org", password=PASSWORD)

    # oidc: tokens and grants gone (userinfo refuses the token at once), notices gone,
    # the owned client stays, detached.
    assert userinfo(everything.tokens["access_token"]).status_code == 401
    for model in (AccessToken, RefreshToken, IDToken, AuthorizationCode, DeviceGrant, InternalServiceNotice):
        assert not model.objects.filter(user_id=user_id).exists(), model
    owned = Client.objects.get(pk=everything.owned.pk)
    assert owned.user_id is None
    refreshed = BrowserClient().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": everything.tokens["refresh_token"]},
        HTTP_AUTHORIZATION=partner.basic_auth(),
    )
    assert refreshed.status_code == 400

    # mfa, franceconnect.
    for model in (TOTPDevice, BackupCodeDevice, Passkey):
        assert not model.objects.filter(user_id=user_id).exists(), model
    assert not BackupCode.objects.exists()
    assert not FranceConnectLink.objects.filter(sub=FC_SUB).exists()

    # connectors: the partner is told (a pending back-channel logout, delivered after
    # the erasure); the emails queued to the resident still go out.
    logouts = OutboxMessage.objects.filter(kind=BACKCHANNEL_LOGOUT, partner=partner.client_id)
    assert [message.status for message in logouts] == [OutboxMessage.Status.PENDING]
    assert logouts[0].payload["sid"] in sids
    emails = OutboxMessage.objects.filter(kind=EMAIL, status=OutboxMessage.Status.PENDING)
    assert emails.count() == everything.emails_queued and all(message.payload for message in emails)
    assert report.report("connectors").details["pending"] == 1 + everything.emails_queued

    # consent: keys destroyed, pseudonymised proof kept, the ledger still verifies.
    for subject in Subject.objects.filter(pk__in=subjects):
        assert subject.user_id is None and subject.wrapped_key is None and subject.key_destroyed_at
    for event in consent_events:
        stored = LedgerEvent.objects.get(pk=event.pk)
        if stored.details_ciphertext:
            with pytest.raises(crypto.KeyDestroyed):
                event_details(stored)
    verification = ledger_verify()
    assert verification.ok, verification.problems

    # Kept: the audit rows about the resident, with no personal data in them.
    kept = AuditEvent.objects.filter(subject_user_id=user_id)
    assert {"login.succeeded", "consent.subject_erased", "account.erased", "session.ended"} <= set(
        kept.values_list("event", flat=True)
    )
    dumped = json.dumps(list(kept.values("event", "client_id", "data")), default=str)
    assert "dominique@example.org" not in dumped and "+33240000000" not in dumped


def test_a_delivered_logout_about_the_resident_is_blanked_a_pending_one_kept(everything: Any) -> None:
    resident = everything.user
    sessions_end_all(user=resident)  # the resident signed out everywhere earlier: one logout queued
    OutboxMessage.objects.filter(kind=BACKCHANNEL_LOGOUT).update(
        status=OutboxMessage.Status.DELIVERED, delivered_at=timezone.now()
    )
    report = rights.rights_erase(resident)
    delivered = OutboxMessage.objects.get(kind=BACKCHANNEL_LOGOUT)
    assert delivered.payload == {} and delivered.status == OutboxMessage.Status.DELIVERED
    assert report.report("connectors").details["blanked"] == 1
    assert report.report("oidc").details["sessions_ended"] == 0  # nothing left to end


def test_an_erasure_that_fails_changes_nothing(everything: Any) -> None:
    resident = everything.user

    def fails(user: Any) -> Any:
        raise RuntimeError("a provider failed")

    rights.register_provider("fails-last", export=dict, erase=fails, order=99)
    try:
        with pytest.raises(RuntimeError):
            rights.rights_erase(resident)
    finally:
        rights.unregister_provider("fails-last")

    assert User.objects.filter(pk=resident.pk).exists()
    assert BrowserSession.objects.filter(user=resident, ended_at__isnull=True).count() == 1
    assert TOTPDevice.objects.filter(user=resident).exists()
    assert Subject.objects.filter(user=resident, wrapped_key__isnull=False).exists()
    assert not OutboxMessage.objects.filter(kind=BACKCHANNEL_LOGOUT).exists()
    assert userinfo(everything.tokens["access_token"]).status_code == 200


def test_a_provider_returning_unknown_report_fields_is_refused(make_resident: Any) -> None:
    rights.register_provider("odd", export=dict, erase=lambda user: {"deleted": []}, order=1)
    try:
        with pytest.raises(rights.RightsError, match="odd"):
            rights.rights_erase(make_resident())
    finally:
        rights.unregister_provider("odd")
