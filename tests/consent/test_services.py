"""Consent services: catalogue, partner purposes, notices, bad input, browsers, expiry, rights."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from consent import rights
from consent.models import ConsentState, LedgerEvent, PrivacyNotice, Purpose
from consent.selectors import (
    browser_consent_states,
    consent_is_granted,
    event_details,
    events_search,
    processing_register,
)
from consent.services import (
    BrowserProofError,
    ConsentError,
    UnknownPurpose,
    browser_subject_register,
    consent_expire_lapsed,
    consent_record,
    notice_content_sha256,
    notice_publish,
    purpose_for_client,
    subject_link_browser,
)
from identity.models import AuditEvent
from identity.oidc.sharing import purpose_for_client_scopes

BROWSER = "Zm9vYmFyYmF6cXV4LXJhbmRvbS1icm93c2VyLWlk"


def test_the_seeded_catalogue_holds_the_real_purposes(db: Any) -> None:
    codes = set(Purpose.objects.values_list("code", flat=True))
    assert {
        "personalisation-declared",
        "personalisation-browsing",
        "audience-measurement",
        "service-news-email",
    } <= codes
    browsing = Purpose.objects.get(code="personalisation-browsing")
    assert browsing.consent_lifetime_days == 183
    assert {c["kind"] for c in browsing.data_categories} == {"inferred"}
    declared = Purpose.objects.get(code="personalisation-declared")
    assert {c["kind"] for c in declared.data_categories} == {"declared"}
    audience = Purpose.objects.get(code="audience-measurement")
    assert not audience.requires_consent and audience.gdpr_article == "Art. 6(1)(e)"
    notice = PrivacyNotice.objects.get(purpose__isnull=True)
    assert notice.version == 1 and notice.content_sha256 == notice_content_sha256(
        notice.text_fr, notice.text_en
    )
    register = processing_register()
    assert {row["code"] for row in register} >= codes and all(row["lawful_basis"]["gdpr"] for row in register)


def test_purpose_for_client_scopes_is_one_per_client_and_scope_set(make_client: Any) -> None:
    partner = make_client(name="Bibliothèques de Nantes").client
    first = purpose_for_client_scopes(client=partner, scopes=["openid", "email"])
    again = purpose_for_client_scopes(client=partner, scopes="email openid email")
    assert first.pk == again.pk
    assert first.code == f"share:{partner.client_id}:email+openid"
    assert first.requires_consent and first.gdpr_article == "Art. 6(1)(a)"
    assert first.recipients == ["Bibliothèques de Nantes"]
    wider = purpose_for_client_scopes(client=partner, scopes=["openid", "email", "profile"])
    assert wider.pk != first.pk
    other = make_client(name="Billetterie").client
    assert purpose_for_client_scopes(client=other, scopes=["openid", "email"]).pk != first.pk
    internal = make_client(name="Démarches en ligne", is_internal=True).client
    assert not purpose_for_client_scopes(client=internal, scopes=["openid"]).requires_consent


def test_purpose_for_client_scopes_refuses_bad_scopes(make_client: Any) -> None:
    partner = make_client(scopes=["openid", "email"]).client
    with pytest.raises(ConsentError, match="not allowed"):
        purpose_for_client_scopes(client=partner, scopes=["openid", "profile"])
    with pytest.raises(ConsentError):
        purpose_for_client_scopes(client=partner, scopes=[])


def test_purpose_for_client_is_one_per_client_and_key_and_knows_no_scope(
    make_client: Any, snapshot: Any
) -> None:
    """consent keeps a partner's purpose under the caller's key, which it never interprets."""
    partner = make_client().client
    fields = {
        "code": "share:test:key",
        "title_fr": "Partage",
        "title_en": "Sharing",
        "description_fr": "d",
        "description_en": "d",
        "gdpr_article": "Art. 6(1)(a)",
        "dpv_legal_basis": "eu-gdpr:A6-1-a",
        "dpv_purpose": "dpv:ServiceProvision",
    }
    first = purpose_for_client(client=partner, key="anything at all", fields=fields)
    assert (first.client_id, first.client_key, first.code) == (
        partner.pk,
        "anything at all",
        "share:test:key",
    )
    # The same key finds it again; the fields only serve at creation.
    again = purpose_for_client(client=partner, key="anything at all", fields={**fields, "code": "other"})
    assert again.pk == first.pk and again.code == "share:test:key"
    before = snapshot()
    with pytest.raises(ConsentError, match="key"):
        purpose_for_client(client=partner, key=" ", fields=fields)
    with pytest.raises(ConsentError, match="registered client"):
        purpose_for_client(client=None, key="k", fields=fields)
    assert snapshot() == before


def test_sharing_purpose_events_carry_the_partner(make_client: Any, make_resident: Any) -> None:
    partner = make_client().client
    purpose = purpose_for_client_scopes(client=partner, scopes=["openid", "email"])
    resident = make_resident()
    event = consent_record(
        user=resident, purpose_code=purpose.code, event_type="given", collection_method="oidc_consent"
    )
    assert event.partner_client_id == partner.client_id
    assert consent_is_granted(user=resident, purpose_code=purpose.code)
    # The partner may revoke its own purpose (e.g. the resident closed the partner account).
    revoked = consent_record(
        user=resident,
        purpose_code=purpose.code,
        event_type="revoked",
        collection_method="api",
        acting_client=partner,
    )
    assert (revoked.actor_type, revoked.actor_id) == ("partner", partner.client_id)
    assert not consent_is_granted(user=resident, purpose_code=purpose.code)
    assert list(events_search(partner_client_id=partner.client_id)) == [event, revoked]


def test_notice_versions_count_per_purpose_and_globally(db: Any) -> None:
    news = Purpose.objects.get(code="service-news-email")
    first = notice_publish(purpose=news, text_fr="a", text_en="b", material=False)
    second = notice_publish(purpose=news, text_fr="c", text_en="d", material=True)
    global_notice = notice_publish(purpose=None, text_fr="e", text_en="f", material=False)
    assert (first.version, second.version, global_notice.version) == (1, 2, 2)
    assert second.content_sha256 == notice_content_sha256("c", "d")
    assert AuditEvent.objects.filter(event="consent.notice_published").count() == 3


# --- Bad input writes nothing ------------------------------------------------------------------


def bad_calls(
    resident: Any, staff: Any, partner: Any, news_purpose_code: str
) -> list[tuple[type, dict[str, Any]]]:
    base = {"user": resident, "purpose_code": "personalisation-declared", "collection_method": "web_form"}
    return [
        (UnknownPurpose, {**base, "purpose_code": "no-such-purpose", "event_type": "given"}),
        (UnknownPurpose, {**base, "purpose_code": "", "event_type": "given"}),
        (ConsentError, {**base, "event_type": "approved"}),
        (ConsentError, {**base, "event_type": "expired"}),
        (ConsentError, {**base, "event_type": "given", "collection_method": "carrier-pigeon"}),
        (ConsentError, {**base, "event_type": "given", "collection_method": "system"}),
        (ConsentError, {**base, "event_type": "given", "browser_id": BROWSER}),
        (ConsentError, {**{k: v for k, v in base.items() if k != "user"}, "event_type": "given"}),
        (
            ConsentError,
            {**{k: v for k, v in base.items() if k != "user"}, "event_type": "given", "browser_id": "x"},
        ),
        (ConsentError, {**base, "event_type": "given", "valid_until": timezone.now().replace(tzinfo=None)}),
        (ConsentError, {**base, "event_type": "given", "valid_until": timezone.now() - timedelta(days=1)}),
        (ConsentError, {**base, "event_type": "given", "valid_until": timezone.now() + timedelta(days=400)}),
        (
            ConsentError,
            {**base, "event_type": "withdrawn", "valid_until": timezone.now() + timedelta(days=1)},
        ),
        (ConsentError, {**base, "event_type": "renewed"}),
        (ConsentError, {**base, "event_type": "revoked"}),
        (ConsentError, {**base, "event_type": "given", "details": "free text"}),
        (ConsentError, {**base, "event_type": "given", "details": {"x": object()}}),
        (ConsentError, {**base, "event_type": "given", "collection_method": "staff_on_behalf"}),
        (
            ConsentError,
            {
                **base,
                "event_type": "given",
                "acting_user": resident.__class__.objects.create_user(
                    email="not-staff@example.org", password=None
                ),
                "collection_method": "staff_on_behalf",
                "details": {"form": "A-12"},
            },
        ),
        (
            ConsentError,
            {**base, "event_type": "given", "acting_user": staff, "collection_method": "staff_on_behalf"},
        ),
        (ConsentError, {**base, "event_type": "given", "acting_user": staff, "details": {"form": "A-12"}}),
        (ConsentError, {**base, "event_type": "given", "acting_client": partner, "collection_method": "api"}),
        (
            ConsentError,
            {
                **base,
                "purpose_code": news_purpose_code,
                "event_type": "revoked",
                "acting_client": partner,
                "collection_method": "web_form",
            },
        ),
    ]


def test_bad_input_raises_a_clear_error_and_writes_nothing(
    make_resident: Any, make_client: Any, snapshot: Any
) -> None:
    resident = make_resident()
    staff = get_user_model().objects.create_user(email="agent@example.org", password=None, is_staff=True)
    partner = make_client().client
    other_partner = make_client(name="Autre partenaire").client
    other_purpose = purpose_for_client_scopes(client=other_partner, scopes=["openid"])
    calls = bad_calls(resident, staff, partner, other_purpose.code)
    # A partner cannot act on another partner's purpose.
    calls.append(
        (
            ConsentError,
            {
                "user": resident,
                "purpose_code": other_purpose.code,
                "event_type": "revoked",
                "collection_method": "api",
                "acting_client": partner,
            },
        )
    )
    before = snapshot()
    for error, kwargs in calls:
        with pytest.raises(error) as raised:
            consent_record(**kwargs)
        assert str(raised.value), kwargs
        assert snapshot() == before, kwargs


def test_no_notice_means_no_informed_consent(make_resident: Any, snapshot: Any) -> None:
    PrivacyNotice.objects.all().delete()
    resident = make_resident()
    before = snapshot()
    with pytest.raises(ConsentError, match="notice"):
        consent_record(
            user=resident, purpose_code="service-news-email", event_type="given", collection_method="web_form"
        )
    after = snapshot()
    assert after == before


def test_retired_purposes_are_refused(make_resident: Any) -> None:
    Purpose.objects.filter(code="service-news-email").update(is_active=False)
    with pytest.raises(UnknownPurpose, match="retired"):
        consent_record(
            user=make_resident(),
            purpose_code="service-news-email",
            event_type="given",
            collection_method="web_form",
        )


def test_staff_records_on_behalf_with_evidence_and_an_audit_row(make_resident: Any) -> None:
    resident = make_resident()
    staff = get_user_model().objects.create_user(email="agent@example.org", password=None, is_staff=True)
    event = consent_record(
        user=resident,
        purpose_code="service-news-email",
        event_type="given",
        collection_method="staff_on_behalf",
        acting_user=staff,
        details={"form": "formulaire papier n° 2024-118", "desk": "Mairie annexe Doulon"},
    )
    assert (event.actor_type, event.actor_id) == ("staff", str(staff.pk))
    assert event_details(event) == {"form": "formulaire papier n° 2024-118", "desk": "Mairie annexe Doulon"}
    assert b"Doulon" not in bytes(event.details_ciphertext)
    audit = AuditEvent.objects.get(event="consent.recorded_on_behalf")
    assert audit.acting_user_id == staff.pk and audit.subject_user_id == resident.pk
    assert "Doulon" not in str(audit.data)


# --- Browsers and expiry ------------------------------------------------------------------------


def test_a_browser_history_is_attached_to_the_account_at_sign_in(make_resident: Any) -> None:
    resident = make_resident()
    consent_record(
        user=resident,
        purpose_code="personalisation-declared",
        event_type="given",
        collection_method="web_form",
    )
    consent_record(
        user=resident, purpose_code="audience-measurement", event_type="given", collection_method="web_form"
    )
    secret = browser_subject_register(browser_id=BROWSER)
    assert secret and browser_subject_register(browser_id=BROWSER) is None  # returned once
    consent_record(
        browser_id=BROWSER,
        purpose_code="personalisation-browsing",
        event_type="given",
        collection_method="cookie_widget",
    )
    consent_record(
        browser_id=BROWSER,
        purpose_code="audience-measurement",
        event_type="refused",
        collection_method="cookie_widget",
    )
    assert browser_consent_states(browser_id=BROWSER) == {
        "personalisation-browsing": "given",
        "audience-measurement": "refused",
    }
    assert not consent_is_granted(user=resident, purpose_code="personalisation-browsing")
    # The browser id alone proves nothing (issue 9, finding 3): its secret is required.
    for wrong in (None, "", "not-the-secret"):
        with pytest.raises(BrowserProofError):
            subject_link_browser(browser_id=BROWSER, browser_secret=wrong, user=resident)
    assert not consent_is_granted(user=resident, purpose_code="personalisation-browsing")
    copied = subject_link_browser(browser_id=BROWSER, browser_secret=secret, user=resident)
    assert {(e.purpose_code, e.event_type) for e in copied} == {
        ("personalisation-browsing", "given"),
        ("audience-measurement", "refused"),  # more recent than the account's choice
    }
    originals = {e.id for e in LedgerEvent.objects.filter(subject__browser_id_hash__isnull=False)}
    assert {e.linked_from for e in copied} == originals
    assert all(e.collection_method == "cookie_widget" for e in copied)
    assert consent_is_granted(user=resident, purpose_code="personalisation-browsing")
    assert not consent_is_granted(user=resident, purpose_code="audience-measurement")
    # Idempotent, and a shared browser is not attached to a second account.
    assert subject_link_browser(browser_id=BROWSER, browser_secret=secret, user=resident) == []
    assert subject_link_browser(browser_id=BROWSER, browser_secret=secret, user=make_resident()) == []
    # An unknown browser, or one registered before secrets existed, cannot be attached.
    with pytest.raises(BrowserProofError):
        subject_link_browser(browser_id="unknown-browser-id-0000000", browser_secret=secret, user=resident)
    consent_record(
        browser_id="legacy-browser-id-00000000",
        purpose_code="personalisation-browsing",
        event_type="given",
        collection_method="cookie_widget",
    )
    with pytest.raises(BrowserProofError):
        subject_link_browser(browser_id="legacy-browser-id-00000000", browser_secret="", user=resident)


def test_expiry_events_are_optional_bookkeeping(make_resident: Any, monkeypatch: Any) -> None:
    resident = make_resident()
    real_now = timezone.now
    start = real_now() - timedelta(days=200)
    monkeypatch.setattr(timezone, "now", lambda: start)
    consent_record(
        user=resident,
        purpose_code="personalisation-browsing",
        event_type="given",
        collection_method="web_form",
    )
    consent_record(
        user=resident, purpose_code="service-news-email", event_type="given", collection_method="web_form"
    )
    monkeypatch.setattr(timezone, "now", real_now)
    assert not consent_is_granted(user=resident, purpose_code="personalisation-browsing")
    assert consent_expire_lapsed() == 1
    assert consent_expire_lapsed() == 0
    expired = LedgerEvent.objects.get(event_type="expired")
    assert (expired.purpose_code, expired.actor_type, expired.collection_method) == (
        "personalisation-browsing",
        "system",
        "system",
    )
    assert ConsentState.objects.get(purpose__code="personalisation-browsing").status == "expired"
    assert consent_is_granted(user=resident, purpose_code="service-news-email")
    # An expired consent may be renewed.
    consent_record(
        user=resident,
        purpose_code="personalisation-browsing",
        event_type="renewed",
        collection_method="web_form",
    )
    assert consent_is_granted(user=resident, purpose_code="personalisation-browsing")


def test_the_consent_app_registers_its_rights_provider(make_resident: Any) -> None:
    assert "consent" in [provider.name for provider in rights.providers()]
    resident = make_resident()
    consent_record(
        user=resident,
        purpose_code="service-news-email",
        event_type="given",
        collection_method="web_form",
        details={"note": "inscrit au salon"},
    )
    exported = rights.export_all(resident)["consent"]
    assert exported["current_choices"][0]["purpose"] == "service-news-email"
    assert exported["ledger_events"][0]["details"] == {"note": "inscrit au salon"}
