"""OpenID Connect Prompt Create 1.0, and ui_locales (OIDC Core §3.1.2.1)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.test import Client as BrowserClient

from tests.conftest import OIDCFlow


def test_prompt_create_sends_a_visitor_to_account_creation_then_back(rp):
    flow = OIDCFlow(BrowserClient(), rp)
    response = flow.authorize(prompt="create")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/inscription/"
    resume = parse_qs(location.query)["next"][0]
    assert resume.startswith("/authorize?")
    assert "prompt" not in parse_qs(urlsplit(resume).query)
    # The registration page offers the way back to the partner.
    page = flow.browser.get(response["Location"])
    assert page.status_code == 200


def test_prompt_create_for_a_signed_in_resident_just_continues(flow):
    code = flow.get_code(prompt="create")
    assert flow.token(code).status_code == 200


def test_discovery_lists_create():
    metadata = BrowserClient().get("/.well-known/openid-configuration").json()
    assert "create" in metadata["prompt_values_supported"]


def test_ui_locales_picks_the_login_page_language(rp):
    flow = OIDCFlow(BrowserClient(), rp)
    response = flow.authorize(ui_locales="de en-GB fr")
    assert response.cookies["language"].value == "en"
    login = flow.browser.get(response["Location"])
    assert '<html lang="en">' in login.content.decode()


def test_ui_locales_never_overrides_the_residents_own_choice(rp):
    browser = BrowserClient()
    browser.cookies["language"] = "fr"
    flow = OIDCFlow(browser, rp)
    response = flow.authorize(ui_locales="en")
    assert "language" not in response.cookies
    assert '<html lang="fr">' in browser.get(response["Location"]).content.decode()
