"""The DPO keeps the purpose catalogue from the console: new purposes, new notice versions."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as BrowserClient

from consent.dpo.catalogue import parse_categories
from consent.gate import consent_is_granted
from consent.models import PrivacyNotice, Purpose
from consent.services import consent_record
from identity.models import AuditEvent
from tests.conftest import MFA_AMR, open_session

pytestmark = pytest.mark.django_db

DECLARED = "personalisation-declared"

VALID = {
    "code": "newsletter-culture",
    "title_fr": "Lettre culturelle mensuelle",
    "title_en": "Cultural newsletter",
    "description_fr": "Vous recevez chaque mois le programme culturel de la métropole.",
    "description_en": "You receive the metropolis's cultural programme every month.",
    "legal_basis": "a",
    "dpv_purpose": "dpv:CommunicationManagement",
    "data_categories": "declared ; email ; Adresse e-mail ; Email address\n\n"
    "inferred ; interests ; Centres d'intérêt déduits ; Inferred interests",
    "recipients": "Nantes Métropole — direction de la culture\n",
    "retention_days": "395",
    "consent_lifetime_days": "365",
}


def test_the_catalogue_page_lists_every_purpose_and_the_global_notice(dpo_http: BrowserClient) -> None:
    page = dpo_http.get("/dpo/finalites/")
    assert page.status_code == 200
    html = page.content.decode()
    for purpose in Purpose.objects.all():
        assert purpose.code in html
    assert "Notice générale" in html and "Version 1" in html
    assert 'href="/dpo/finalites/"' in dpo_http.get("/dpo/").content.decode()  # in the console's menu


def test_creating_a_purpose(dpo: Any, dpo_http: BrowserClient) -> None:
    response = dpo_http.post("/dpo/finalites/nouvelle/", VALID)
    assert response.status_code == 302
    assert response["Location"] == "/dpo/finalites/newsletter-culture/notice/"
    purpose = Purpose.objects.get(code="newsletter-culture")
    assert (purpose.gdpr_article, purpose.dpv_legal_basis, purpose.requires_consent) == (
        "Art. 6(1)(a)",
        "eu-gdpr:A6-1-a",
        True,
    )
    assert purpose.consent_lifetime_days == 365 and purpose.retention_days == 395
    assert purpose.data_categories == [
        {"code": "email", "kind": "declared", "fr": "Adresse e-mail", "en": "Email address"},
        {
            "code": "interests",
            "kind": "inferred",
            "fr": "Centres d'intérêt déduits",
            "en": "Inferred interests",
        },
    ]
    assert purpose.recipients == ["Nantes Métropole — direction de la culture"]
    audit = AuditEvent.objects.get(event="consent.purpose_created")
    assert audit.acting_user_id == dpo.pk and audit.data == {"purpose": "newsletter-culture"}
    # Generated pages read the catalogue: the privacy policy and the register show it at once.
    assert "Lettre culturelle mensuelle" in BrowserClient().get("/confidentialite/").content.decode()
    assert "newsletter-culture" in dpo_http.get("/dpo/registre/").content.decode()


def test_a_purpose_on_another_legal_basis_asks_no_consent(dpo_http: BrowserClient) -> None:
    fields = {**VALID, "code": "tax-notices", "legal_basis": "c", "consent_lifetime_days": ""}
    assert dpo_http.post("/dpo/finalites/nouvelle/", fields).status_code == 302
    purpose = Purpose.objects.get(code="tax-notices")
    assert (purpose.gdpr_article, purpose.requires_consent, purpose.consent_lifetime_days) == (
        "Art. 6(1)(c)",
        False,
        None,
    )


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"code": "Has Spaces"}, "code", "lettres minuscules"),
        ({"code": DECLARED}, "code", "Une finalité porte déjà ce code."),
        ({"title_en": ""}, "title_en", "Ce champ est obligatoire."),
        ({"data_categories": "declared ; email ; Adresse e-mail"}, "data_categories", "Ligne 1"),
        ({"data_categories": "guessed ; a ; b ; c"}, "data_categories", "declared"),
        ({"consent_lifetime_days": ""}, "consent_lifetime_days", "395 jours au plus"),
        ({"consent_lifetime_days": "400"}, "consent_lifetime_days", "395"),
        ({"legal_basis": "z"}, "legal_basis", "Sélectionnez un choix valide"),
    ],
)
def test_a_bad_purpose_is_refused_with_a_message_and_nothing_is_created(
    dpo_http: BrowserClient, changes: dict[str, str], field: str, message: str
) -> None:
    before = Purpose.objects.count()
    response = dpo_http.post("/dpo/finalites/nouvelle/", {**VALID, **changes})
    assert response.status_code == 400
    assert message in str(response.context["form"].errors[field])
    assert 'role="alert"' in response.content.decode()
    assert Purpose.objects.count() == before
    assert not AuditEvent.objects.filter(event="consent.purpose_created").exists()


def test_category_lines_are_parsed_and_blank_lines_skipped() -> None:
    assert parse_categories("\n declared;commune;Commune;Commune \n\n") == [
        {"code": "commune", "kind": "declared", "fr": "Commune", "en": "Commune"}
    ]


def test_publishing_a_notice_version_and_a_material_change(
    dpo: Any, dpo_http: BrowserClient, make_resident: Any
) -> None:
    resident = make_resident("alice@example.org")
    consent_record(user=resident, purpose_code=DECLARED, event_type="given", collection_method="web_form")
    assert consent_is_granted(user=resident, purpose_code=DECLARED)
    form = dpo_http.get(f"/dpo/finalites/{DECLARED}/notice/")
    assert form.status_code == 200

    minor = {"text_fr": "Texte corrigé.", "text_en": "Corrected text."}
    assert dpo_http.post(f"/dpo/finalites/{DECLARED}/notice/", minor).status_code == 302
    first = PrivacyNotice.objects.filter(purpose__code=DECLARED).order_by("-version").first()
    assert first is not None and (first.text_fr, first.material) == ("Texte corrigé.", False)
    assert consent_is_granted(user=resident, purpose_code=DECLARED)  # a correction keeps consents

    material = {
        "text_fr": "Nous ajoutons un destinataire.",
        "text_en": "We add a recipient.",
        "material": "on",
    }
    assert dpo_http.post(f"/dpo/finalites/{DECLARED}/notice/", material).status_code == 302
    second = PrivacyNotice.objects.filter(purpose__code=DECLARED).order_by("-version").first()
    assert second is not None and second.version == first.version + 1 and second.material
    assert not consent_is_granted(user=resident, purpose_code=DECLARED)  # to be given again
    audit = AuditEvent.objects.filter(event="consent.notice_published").order_by("-id").first()
    assert audit is not None and audit.acting_user_id == dpo.pk
    assert audit.data["material"] is True and audit.data["renewal_required"] == 1
    # The next form starts from the text in force.
    assert (
        "Nous ajoutons un destinataire."
        in dpo_http.get(f"/dpo/finalites/{DECLARED}/notice/").content.decode()
    )


def test_publishing_the_global_notice(dpo_http: BrowserClient) -> None:
    version = PrivacyNotice.objects.filter(purpose__isnull=True).count()
    fields = {"text_fr": "Notice générale, version nouvelle.", "text_en": "General notice, new version."}
    assert dpo_http.post("/dpo/finalites/notice-generale/", fields).status_code == 302
    latest = PrivacyNotice.objects.filter(purpose__isnull=True).order_by("-version").first()
    assert latest is not None and latest.version == version + 1


def test_an_empty_notice_is_refused_and_nothing_is_published(dpo_http: BrowserClient) -> None:
    before = PrivacyNotice.objects.count()
    response = dpo_http.post(f"/dpo/finalites/{DECLARED}/notice/", {"text_fr": " ", "text_en": "Text."})
    assert response.status_code == 400
    assert PrivacyNotice.objects.count() == before


def test_unknown_purpose_is_404(dpo_http: BrowserClient) -> None:
    assert dpo_http.get("/dpo/finalites/no-such-purpose/notice/").status_code == 404
    assert (
        dpo_http.post("/dpo/finalites/no-such-purpose/notice/", {"text_fr": "a", "text_en": "b"}).status_code
        == 404
    )


def test_writes_need_a_recent_second_factor_sign_in(dpo: Any) -> None:
    stale = open_session(BrowserClient(), dpo, MFA_AMR, age=3600)
    assert stale.get("/dpo/finalites/").status_code == 200  # reading the catalogue is fine
    before = (Purpose.objects.count(), PrivacyNotice.objects.count())
    for path, data in (
        ("/dpo/finalites/nouvelle/", VALID),
        (f"/dpo/finalites/{DECLARED}/notice/", {"text_fr": "a", "text_en": "b"}),
        ("/dpo/finalites/notice-generale/", {"text_fr": "a", "text_en": "b"}),
    ):
        response = stale.post(path, data)
        assert response.status_code == 302 and "/dpo/" not in response["Location"].split("?")[0], path
    assert (Purpose.objects.count(), PrivacyNotice.objects.count()) == before


def test_residents_and_visitors_cannot_reach_the_catalogue(make_resident: Any) -> None:
    visitor = BrowserClient()
    assert visitor.get("/dpo/finalites/nouvelle/").status_code == 302
    resident = open_session(BrowserClient(), make_resident("bob@example.org"), MFA_AMR)
    assert resident.post("/dpo/finalites/nouvelle/", VALID).status_code == 403
    assert not Purpose.objects.filter(code=VALID["code"]).exists()


def test_csrf_is_required(dpo: Any) -> None:
    strict = open_session(BrowserClient(enforce_csrf_checks=True), dpo, MFA_AMR)
    assert strict.post("/dpo/finalites/nouvelle/", VALID).status_code == 403
    assert not Purpose.objects.filter(code=VALID["code"]).exists()
