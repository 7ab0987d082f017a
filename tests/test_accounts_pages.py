"""Pages as a whole: home, languages, and the markup rules every resident page follows."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

ANONYMOUS_PAGES = [
    "/",
    "/connexion/",
    "/deconnexion/",
    "/inscription/",
    "/inscription/envoye/",
    "/inscription/adresse-confirmee/",
    "/inscription/renvoyer/",
    "/inscription/renvoyer/envoye/",
    "/inscription/verifier/unknown/",
    "/mot-de-passe-oublie/",
    "/mot-de-passe-oublie/envoye/",
    "/mot-de-passe-oublie/termine/",
]
SIGNED_IN_PAGES = ["/compte/", "/compte/mot-de-passe/", "/deconnexion/", "/inscription/renvoyer/"]


def check_page_rules(html: str) -> None:
    assert re.search(r'<html lang="(fr|en)">', html)
    assert html.count("<h1") == 1, "one h1 per page"
    assert '<a class="skip-link" href="#contenu">' in html
    assert 'id="contenu"' in html
    assert "<title>" in html and "<title> –" not in html  # every page has its own title
    # Strict CSP: no inline script or style of any kind.
    assert "<script" not in html
    assert "<style" not in html
    assert " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
    # Every visible input has a label.
    for input_id in re.findall(r'<input type="(?:text|email|password)"[^>]*id="([^"]+)"', html):
        assert f'<label for="{input_id}">' in html


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_anonymous_pages_follow_the_rules(client, path):
    response = client.get(path)
    assert response.status_code in (200, 404)
    check_page_rules(response.content.decode())


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_signed_in_pages_follow_the_rules(signed_in, path):
    response = signed_in.get(path)
    assert response.status_code == 200
    check_page_rules(response.content.decode())


def test_pages_with_errors_follow_the_rules(client, resident):
    html = client.post("/connexion/", {"username": resident.email, "password": "nope"}).content.decode()
    check_page_rules(html)
    html = client.post("/inscription/", {"email": "x"}).content.decode()
    check_page_rules(html)


def test_home_explains_and_links(client, settings):
    html = client.get("/").content.decode()
    assert "Un seul compte pour tous les services" in html
    assert 'href="/connexion/"' in html
    assert 'href="/inscription/"' in html
    assert ('href="/demo/"' in html) == settings.DEMO_ENABLED


def test_home_links_to_the_account_when_signed_in(signed_in):
    html = signed_in.get("/").content.decode()
    assert 'href="/compte/"' in html


def test_english_with_the_language_cookie(client, db):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    html = client.get("/connexion/").content.decode()
    assert '<html lang="en">' in html
    assert "<h1>Sign in</h1>" in html
    assert "Email address" in html
    assert "Forgotten your password?" in html
    assert "Skip to content" in html
    assert '<span lang="fr">Français</span>' in html


def test_english_with_accept_language(db):
    html = Client(HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9").get("/").content.decode()
    assert '<html lang="en">' in html
    assert "Create an account" in html


def test_french_by_default(db):
    html = Client(HTTP_ACCEPT_LANGUAGE="de").get("/").content.decode()
    assert '<html lang="fr">' in html
    assert '<span lang="en">English</span>' in html


def test_english_errors_and_rate_limit_message(client, resident, settings):
    settings.LOGIN_RATE_LIMIT = {**settings.LOGIN_RATE_LIMIT, "per_account": 1}
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    html = client.post("/connexion/", {"username": resident.email, "password": "nope"}).content.decode()
    assert "There is a problem" in html
    assert "Too many attempts" in html
    assert "<title>Error –" in html
    weak = client.post("/inscription/", {"email": "a@example.org", "password": "azerty123"}).content.decode()
    assert "This password is too common" in weak
    assert "At least 8 characters" in weak


def test_language_switch_is_a_post_form_that_sets_the_cookie(client, db):
    html = client.get("/connexion/?next=/authorize%3Fx%3D1").content.decode()
    assert re.search(r'<form class="language" action="/i18n/setlang/" method="post">', html)
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/connexion/"})
    assert response.status_code == 302
    assert response["Location"] == "/connexion/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert "<h1>Sign in</h1>" in client.get("/connexion/").content.decode()


def test_consent_buttons_are_styled_alike():
    css = (Path(settings.BASE_DIR) / "static" / "css" / "site.css").read_text()
    assert ".decision button {" in css
    # No rule singles out one of the two decisions.
    decision_selectors = re.findall(r"([^{}]*\.decision[^{]*)\{", css)
    assert decision_selectors
    for selector in decision_selectors:
        assert not re.search(r"allow|deny|first|last|nth|\+", selector), selector


def test_stylesheet_has_focus_styles_and_touch_targets():
    css = (Path(settings.BASE_DIR) / "static" / "css" / "site.css").read_text()
    assert ":focus-visible" in css
    assert "min-height: 44px" in css
    assert "font-size: 1rem" in css


# --- translations -----------------------------------------------------------------------------

PO_FILE = Path(settings.BASE_DIR) / "locale" / "en" / "LC_MESSAGES" / "django.po"


def _unquote(line: str) -> str:
    return ast.literal_eval(line)


def po_entries() -> list[dict[str, object]]:
    """Parse the catalogue: msgctxt/msgid/msgid_plural/msgstr[n], continuation lines joined."""
    entries: list[dict[str, object]] = []
    for block in PO_FILE.read_text(encoding="utf-8").split("\n\n"):
        entry: dict[str, object] = {"flags": "", "obsolete": False, "msgstr": {}}
        key: tuple[str, int | None] | None = None
        for line in block.splitlines():
            if line.startswith("#~"):
                entry["obsolete"] = True
                continue
            if line.startswith("#,"):
                entry["flags"] = str(entry["flags"]) + line
                continue
            if line.startswith("#") or not line.strip():
                continue
            match = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(".*")$', line)
            if match:
                name, index, value = match.groups()
                key = (name, int(index) if index is not None else None)
                text = _unquote(value)
            else:
                text = _unquote(line.strip())
            assert key is not None, block
            name, index = key
            if name == "msgstr":
                strings = entry["msgstr"]
                assert isinstance(strings, dict)
                strings[index or 0] = strings.get(index or 0, "") + text
            else:
                entry[name] = str(entry.get(name, "")) + text
        if "msgid" in entry:
            entries.append(entry)
    return entries


def test_english_catalogue_is_complete_and_compiled():
    entries = [entry for entry in po_entries() if not entry["obsolete"] and entry["msgid"]]
    assert len(entries) > 100
    with PO_FILE.with_suffix(".mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for entry in entries:
        assert "fuzzy" not in str(entry["flags"]), entry
        strings = entry["msgstr"]
        assert isinstance(strings, dict) and strings and all(strings.values()), entry
        if "msgid_plural" not in entry:
            # The committed .mo is compiled from this very .po.
            msgid = str(entry["msgid"])
            if "msgctxt" in entry:
                msgid = f"{entry['msgctxt']}\x04{msgid}"
            assert compiled._catalog.get(msgid) == strings[0], entry


def test_catalogue_covers_other_parts_of_the_project():
    """Strings from the consent screen, the apps and the demo come out in English."""
    with translation.override("en"):
        assert translation.gettext("Autoriser") == "Allow"
        assert translation.gettext("Refuser") == "Refuse"
        assert translation.gettext("Comptes et connexion") == "Accounts and sign-in"
        assert translation.gettext("Démo d'un service partenaire") == "Partner service demo"


def test_sign_in_then_english_account_page(client, resident):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    client.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    html = client.get("/compte/").content.decode()
    assert "<h1>My account</h1>" in html
    assert "Change my password" in html
