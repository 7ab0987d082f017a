"""Account pages in a real headless Chromium, scanned with axe-core (WCAG 2.1 A/AA), on a phone.

Playwright's sync API allows one instance per thread, and tests/browser/ keeps a
session-wide one open; each test here drives its own browser from a worker thread.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import axe_violations, in_browser
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


ANONYMOUS = [
    "/",
    "/connexion/",
    "/inscription/",
    "/inscription/envoye/",
    "/inscription/renvoyer/",
    "/inscription/verifier/unknown-token/",
    "/mot-de-passe-oublie/",
    "/mot-de-passe-oublie/envoye/",
    "/mot-de-passe-oublie/MQ/not-a-token/",
    "/deconnexion/",
]


def test_anonymous_pages_pass_axe_in_both_languages(live_server: Any) -> None:
    in_browser(lambda page: anonymous_pages(live_server.url, page))


def anonymous_pages(base: str, page: Any) -> None:
    for path in ANONYMOUS:
        page.goto(base + path)
        assert axe_violations(page) == [], path
    page.goto(base + "/connexion/")
    page.get_by_role("button", name="English – changer de langue").click()
    page.wait_for_selector("html[lang=en]")
    for path in ANONYMOUS:
        page.goto(base + path)
        assert page.locator("html").get_attribute("lang") == "en"
        assert axe_violations(page) == [], path


def test_forms_with_errors_pass_axe_and_link_to_fields(live_server: Any) -> None:
    in_browser(lambda page: forms_with_errors(live_server.url, page))


def forms_with_errors(base: str, page: Any) -> None:
    page.goto(base + "/inscription/")
    page.get_by_label("Adresse e-mail").fill("not-an-address")
    page.get_by_label("Mot de passe").fill("court")
    page.get_by_role("button", name="Créer mon compte").click()
    summary = page.locator(".error-summary[role=alert]")
    summary.wait_for()
    assert axe_violations(page) == []
    summary.get_by_role("link").first.click()
    assert page.evaluate("document.activeElement.id") == "id_email"

    page.goto(base + "/connexion/")
    page.get_by_label("Adresse e-mail").fill("nobody@example.org")
    page.get_by_label("Mot de passe").fill("wrong password")
    page.get_by_role("button", name="Se connecter").click()
    page.locator("[role=alert]", has_text="Adresse e-mail ou mot de passe incorrect").wait_for()
    assert axe_violations(page) == []


def test_signed_in_pages_pass_axe(live_server: Any, make_resident: Any) -> None:
    resident = make_resident("pending@example.org", email_verified=False)
    in_browser(lambda page: signed_in_pages(live_server.url, resident.email, page))


def signed_in_pages(base: str, email: str, page: Any) -> None:
    page.goto(base + "/connexion/")
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/compte/")
    assert page.get_by_role("heading", name="Confirmez votre adresse e-mail").is_visible()
    assert axe_violations(page) == []

    for path in ["/compte/mot-de-passe/", "/deconnexion/", "/inscription/renvoyer/"]:
        page.goto(base + path)
        assert axe_violations(page) == [], path

    page.goto(base + "/compte/mot-de-passe/")
    page.get_by_label("Mot de passe actuel").fill("not it")
    page.get_by_label("Nouveau mot de passe").fill("a new passphrase for us")
    page.get_by_role("button", name="Enregistrer le nouveau mot de passe").click()
    page.locator("[role=alert]", has_text="Le mot de passe actuel est incorrect").wait_for()
    assert axe_violations(page) == []

    page.goto(base + "/deconnexion/")
    page.get_by_role("button", name="Me déconnecter").click()
    page.wait_for_url(base + "/")
    assert page.get_by_role("link", name="Se connecter").first.is_visible()
