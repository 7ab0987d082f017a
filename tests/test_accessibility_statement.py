"""The accessibility statement (/accessibilite/, RGAA 4.1 format) and the footer of every page."""

from __future__ import annotations

import html as html_lib

import pytest
from django.conf import settings
from django.urls import reverse

from tests.test_accounts_pages import check_page_rules

pytestmark = pytest.mark.django_db

URL = "/accessibilite/"


def test_url_name():
    assert reverse("identity:accessibility") == URL


@pytest.mark.parametrize("language", ["fr", "en"])
def test_answers_in_both_languages_and_follows_the_page_rules(client, language):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get(URL)
    assert response.status_code == 200
    text = response.content.decode()
    check_page_rules(text)
    assert f'<html lang="{language}">' in text
    heading = "Déclaration d'accessibilité" if language == "fr" else "Accessibility statement"
    assert f"<h1>{heading}</h1>" in text


def test_the_statement_has_every_part_of_the_rgaa_model(client):
    text = html_lib.unescape(client.get(URL).content.decode())
    # The entity, the site and the law.
    assert settings.CONSENT_CONTROLLER["name"] in text
    assert "article 47 de la loi n° 2005-102 du 11 février 2005" in text
    # Compliance status: no audit, so "non conforme", and why.
    assert "non conforme avec le RGAA 4.1" in text
    assert "aucun audit de conformité n'a encore été réalisé" in text
    # Results: only automated checks, said so.
    assert "axe-core" in text and "WCAG 2.1" in text
    assert "ne remplacent pas un audit" in text
    # Non-compliant content, derogations, exempt content.
    for heading in (
        "Contenus non accessibles",
        "Non-conformités",
        "Dérogations pour charge disproportionnée",
        "Contenus non soumis à l'obligation d'accessibilité",
    ):
        assert heading in text
    # How it was established.
    assert "Cette déclaration a été établie le 5 décembre 2026." in text
    assert "Environnement de test" in text and "Chromium" in text
    assert "Outils pour évaluer l'accessibilité" in text
    # Feedback and remedies.
    assert f'href="mailto:{settings.ACCESSIBILITY_CONTACT_EMAIL}"' in text
    assert "Défenseur des droits" in text
    assert "https://formulaire.defenseurdesdroits.fr/" in text
    assert "Libre réponse 71120, 75342 Paris CEDEX 07" in text


def test_english(client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    text = html_lib.unescape(client.get(URL).content.decode())
    assert "does not comply with RGAA 4.1" in text
    assert "Remedies" in text


def test_the_contact_is_a_setting(client, settings):
    settings.ACCESSIBILITY_CONTACT_EMAIL = "accessibilite@essai.example"
    assert 'href="mailto:accessibilite@essai.example"' in client.get(URL).content.decode()


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_footer_of_the_home_page_links_both_pages_and_the_cookies(client, language):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    text = html_lib.unescape(client.get("/").content.decode())
    footer = text[text.index('<footer class="site-footer">') :]
    assert 'href="/confidentialite/"' in footer
    assert 'href="/accessibilite/"' in footer
    assert 'href="/confidentialite/#cookies"' in footer
    if language == "fr":
        assert "Politique de confidentialité" in footer
        assert "Accessibilité : non conforme" in footer
        assert "Gestion des cookies" in footer
    else:
        assert "Privacy policy" in footer
        assert "Accessibility: non-compliant" in footer
        assert "Cookie settings" in footer


def test_the_footer_is_on_other_pages_and_marks_the_current_one(client):
    for path in ("/connexion/", "/inscription/", URL, "/confidentialite/"):
        text = client.get(path).content.decode()
        assert 'href="/accessibilite/"' in text, path
    assert 'href="/accessibilite/" aria-current="page"' in client.get(URL).content.decode()
