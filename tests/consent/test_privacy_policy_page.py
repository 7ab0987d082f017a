"""The public privacy policy (/confidentialite/): generated from the purpose catalogue and the
controller settings, in French and English, honest about what residents can do today."""

from __future__ import annotations

import html as html_lib
from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from consent import selectors
from consent.models import Purpose
from consent.services import notice_publish, purpose_create
from consent.views_public import legal_basis_label
from identity.oidc.sharing import purpose_for_client_scopes
from identity.ratelimit import device_cookie_name
from tests.test_accounts_pages import check_page_rules

pytestmark = pytest.mark.django_db

URL = "/confidentialite/"


def page(client: Any, language: str = "fr") -> str:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get(URL)
    assert response.status_code == 200
    return html_lib.unescape(response.content.decode())


def test_the_url_name_keeps_the_path_receipts_and_the_widget_link_to():
    assert reverse("consent:privacy-policy") == URL
    # CONSENT_POLICY_URL (receipts, the cookie widget, notices) defaults to this page.
    assert f"{settings.ISSUER}{URL}" == settings.CONSENT_POLICY_URL


@pytest.mark.parametrize("language", ["fr", "en"])
def test_answers_in_both_languages_and_follows_the_page_rules(client, language):
    response = client.get(URL, HTTP_COOKIE=f"{settings.LANGUAGE_COOKIE_NAME}={language}")
    assert response.status_code == 200
    text = response.content.decode()
    check_page_rules(text)
    assert f'<html lang="{language}">' in text
    heading = "Politique de confidentialité" if language == "fr" else "Privacy policy"
    assert f"<h1>{heading}</h1>" in text


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_active_purpose_of_the_seeded_catalogue_with_its_legal_basis(client, language):
    text = page(client, language)
    purposes = list(Purpose.objects.filter(is_active=True))
    assert len(purposes) >= 4  # the seeded catalogue (migration 0003)
    for purpose in purposes:
        assert purpose.title(language) in text
        assert (purpose.description_en if language == "en" else purpose.description_fr) in text
        with_language(language, lambda p=purpose: legal_basis_label(p.gdpr_article), text)
        for category in purpose.data_categories:
            assert category[language] in text
        for recipient in purpose.recipients:
            assert recipient in text


def with_language(language: str, label: Any, text: str) -> None:
    with translation.override(language):
        assert label() in text


def test_legal_bases_in_plain_words():
    with translation.override("fr"):
        assert legal_basis_label("Art. 6(1)(a)") == "votre consentement (RGPD, article 6.1.a)"
        assert legal_basis_label("Art. 6(1)(e)") == "notre mission de service public (RGPD, article 6.1.e)"
        assert legal_basis_label("Art. 9(2)(a)") == "Art. 9(2)(a)"  # unknown: shown as stored
    with translation.override("en"):
        assert legal_basis_label("Art. 6(1)(a)") == "your consent (GDPR, Article 6(1)(a))"


def test_retention_and_consent_lifetime_come_from_the_catalogue(client):
    text = page(client)
    # personalisation-browsing: kept 395 days, choice valid 183 days.
    assert "395 jours au plus" in text
    assert "183 jours ; ensuite, il faut le redonner." in text
    # audience-measurement needs no consent: it can be objected to.
    assert "sans demande d'accord ; vous pouvez vous y opposer" in text


def test_a_purpose_created_now_appears_generated_not_hard_coded(client):
    purpose_create(
        code="test-library-reminders",
        title_fr="Rappels de la bibliothèque",
        title_en="Library reminders",
        description_fr="Vous rappeler la date de retour de vos prêts.",
        description_en="Remind you when your loans are due.",
        data_categories=[
            {"code": "loans", "kind": "declared", "fr": "Prêts en cours", "en": "Current loans"}
        ],
        recipients=["Bibliothèque municipale de Nantes"],
        retention_days=30,
        consent_lifetime_days=90,
    )
    text = page(client)
    assert "Rappels de la bibliothèque" in text
    assert "Vous rappeler la date de retour de vos prêts." in text
    assert "Prêts en cours" in text
    assert "Bibliothèque municipale de Nantes" in text
    assert "30 jours au plus" in text
    assert "90 jours ; ensuite, il faut le redonner." in text
    english = page(client, "en")
    assert "Library reminders" in english and "Current loans" in english
    assert "30 days at most" in english


def test_an_inactive_purpose_is_left_out(client):
    Purpose.objects.filter(code="service-news-email").update(is_active=False)
    text = page(client)
    assert "Recevoir les actualités des services par e-mail" not in text


def test_the_current_notice_version_of_each_purpose(client):
    purpose = Purpose.objects.get(code="personalisation-declared")
    notice = notice_publish(purpose=purpose, text_fr="Notice v2.", text_en="Notice v2.", material=False)
    entries = {entry.code: entry for entry in selectors.privacy_policy_purposes(language="fr")}
    assert entries["personalisation-declared"].notice_version == notice.version
    assert entries["personalisation-declared"].notice_sha256 == notice.content_sha256
    # The others still show the global notice.
    assert entries["personalisation-browsing"].notice_version == 1
    text = page(client)
    assert notice.content_sha256 in text


def test_sharing_purposes_name_the_partner_as_recipient(client, make_client):
    registered = make_client(name="Réseau des médiathèques")
    purpose = purpose_for_client_scopes(client=registered.client, scopes=["openid", "email"])
    text = page(client)
    assert purpose.title_fr in text
    assert "Réseau des médiathèques" in text
    assert "votre consentement (RGPD, article 6.1.a)" in text
    assert "fixée par Réseau des médiathèques pour les données qu'il a reçues" in text
    # Listed after the metropolis' own purposes, under the partners' section.
    assert text.index("Le partage avec les services partenaires") < text.index(purpose.title_fr)


def test_controller_and_dpo_contact_come_from_the_settings(client, settings):
    settings.CONSENT_CONTROLLER = {
        **settings.CONSENT_CONTROLLER,
        "name": "Métropole d'essai",
        "email": "dpo@essai.example",
        "address": "1 rue de l'Essai, 44000 Nantes",
        "phone": "+33 2 00 00 00 00",
        "contact": "Déléguée à la protection des données",
    }
    text = page(client)
    assert "Métropole d'essai" in text
    assert 'href="mailto:dpo@essai.example"' in text
    assert "1 rue de l'Essai, 44000 Nantes" in text
    assert 'href="tel:+33200000000"' in text
    assert "Déléguée à la protection des données" in text


def test_rights_and_how_to_exercise_them_today(client):
    text = page(client)
    for right in (
        "droit d'accès",
        "droit de rectification",
        "droit à l'effacement",
        "droit à la portabilité",
        "droit d'opposition",
        "retrait du consentement",
    ):
        assert right in text
    # Honest: export and deletion are in the account (issue 11); the rest is written to the DPO.
    assert "ne permet pas encore" not in text
    assert 'href="/compte/export/"' in text and 'href="/compte/supprimer/"' in text
    assert f'href="mailto:{settings.CONSENT_CONTROLLER["email"]}"' in text
    assert "https://www.cnil.fr/fr/plaintes" in text


def test_cookies_section_lists_the_cookies_this_site_sets(client):
    text = page(client)
    assert 'id="cookies"' in text
    for name in (
        settings.SESSION_COOKIE_NAME,
        settings.CSRF_COOKIE_NAME,
        settings.LANGUAGE_COOKIE_NAME,
        device_cookie_name(),
        "messages",
    ):
        assert f"<code>{name}</code>" in text
    assert "strictement nécessaires" in text
    assert "180 jours" in text  # the known-device cookie
    assert "12 heures" in text  # the session


def test_our_pages_do_not_embed_the_cookie_widget(client):
    """The footer's cookie link leads to the list above because no page of ours loads the
    widget (it is for partner sites); if one ever does, the link must reopen it instead."""
    for path in ("/", URL, "/accessibilite/", "/connexion/"):
        assert "widget.js" not in client.get(path).content.decode()
