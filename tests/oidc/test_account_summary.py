"""Mon compte: one navigation between the sections each app registers, and a summary page
saying what we hold, who received it and what the resident allowed."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client as BrowserClient

from identity import account_sections
from tests.conftest import OIDCFlow
from tests.oidc.conftest import complete_flow

pytestmark = pytest.mark.django_db
LINK = r'<a href="[^"]+"( aria-current="page")?>([^<]+)</a>'


def nav(html: str) -> list[tuple[str, bool]]:
    block = re.search(r'<nav class="account-nav"[^>]*>(.*?)</nav>', html, re.S)
    assert block, "no account navigation on the page"
    return [
        (title, bool(current))
        for current, title in re.findall(
            r'<a href="[^"]+"( aria-current="page")?>([^<]+)</a>', block.group(1)
        )
    ]


def test_the_summary_page_shows_every_section_and_is_current_in_the_navigation(
    signed_in: BrowserClient,
) -> None:
    html = signed_in.get("/compte/").content.decode()
    assert nav(html) == [
        ("Résumé", True),
        ("Informations personnelles", False),
        ("Services connectés", False),
        ("Consentements", False),
        ("Personnalisation", False),
        ("Cartes et abonnements", False),
        ("Sécurité de connexion", False),
        ("Sessions ouvertes", False),
        ("Copie de mes données", False),
        ("Suppression du compte", False),
    ]
    assert "Nous conservons : votre adresse e-mail, votre nom." in html
    assert "Aucun service partenaire ne reçoit vos informations." in html
    assert "Vérification en deux étapes : pas encore activée." in html
    assert "1 session ouverte sur vos appareils." in html
    for href in ("/compte/informations/", "/compte/services/", "/compte/securite/", "/compte/sessions/"):
        assert f'href="{href}"' in html


@pytest.mark.parametrize(
    ("path", "current"),
    [
        ("/compte/informations/", "Informations personnelles"),
        ("/compte/informations/modifier/", "Informations personnelles"),
        ("/compte/services/", "Services connectés"),
        ("/compte/securite/", "Sécurité de connexion"),
        ("/compte/sessions/", "Sessions ouvertes"),
        ("/compte/export/", "Copie de mes données"),
        ("/compte/personnalisation/", "Personnalisation"),
    ],
)
def test_every_page_of_the_account_has_the_navigation(
    signed_in: BrowserClient, path: str, current: str
) -> None:
    response = signed_in.get(path)
    assert response.status_code == 200
    entries = nav(response.content.decode())
    assert [title for title, is_current in entries if is_current] == [current]


def test_the_summary_names_the_partners_that_receive_data(flow: OIDCFlow) -> None:
    complete_flow(flow)  # the resident allowed a partner
    html = flow.browser.get("/compte/").content.decode()
    assert f"1 service reçoit vos informations : {flow.rp.client.name}." in html


def test_a_registered_section_joins_the_navigation_and_the_summary(signed_in: BrowserClient) -> None:
    section = account_sections.AccountSection(
        "test-section",
        "Section d'essai",
        "identity:password-change",
        99,
        lambda user: ["Ligne d'essai"],
        "Ouvrir",
    )
    account_sections.register(section)
    try:
        html = signed_in.get("/compte/").content.decode()
        assert ("Section d&#x27;essai", False) in nav(html)
        assert "Ligne d&#x27;essai" in html
    finally:
        account_sections.unregister("test-section")
    assert "Section d&#x27;essai" not in signed_in.get("/compte/").content.decode()


def test_the_navigation_in_english(signed_in: BrowserClient) -> None:
    signed_in.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    html = signed_in.get("/compte/").content.decode()
    assert [title for title, _current in nav(html)] == [
        "Summary",
        "Personal information",
        "Connected services",
        "Consents",
        "Personalisation",
        "Cards and memberships",
        "Sign-in security",
        "Open sessions",
        "Copy of my data",
        "Account deletion",
    ]
    assert 'aria-label="Sections of my account"' in html
