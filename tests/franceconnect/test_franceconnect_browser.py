"""FranceConnect in a real headless Chromium: button → stand-in provider → first-use page →
account → sign-out through the provider, each page scanned with axe-core (WCAG 2.1 AA).

The browser runs in a thread of its own: Playwright's sync API allows one instance per
thread, and tests/browser keeps a session-wide one open in the main thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from identity.franceconnect.models import FranceConnectLink
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, axe_violations
from tests.conftest import PASSWORD, clear_test_caches
from tests.franceconnect.conftest import CALLBACK_PATH, LOGOUT_RETURN_PATH
from tests.franceconnect.fake_fc import DEFAULT_IDENTITY, FakeFranceConnect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def fc_server(live_server: Any, settings: Any) -> Iterator[tuple[str, FakeFranceConnect]]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    settings.ISSUER = live_server.url
    fake = FakeFranceConnect(
        redirect_uris=(live_server.url + CALLBACK_PATH,),
        post_logout_redirect_uris=(live_server.url + LOGOUT_RETURN_PATH,),
    )
    settings.FRANCECONNECT_ENABLED = True
    settings.FRANCECONNECT_ISSUER = fake.issuer
    settings.FRANCECONNECT_CLIENT_ID = fake.client_id
    settings.FRANCECONNECT_CLIENT_SECRET = fake.client_secret
    clear_test_caches()
    yield live_server.url, fake
    fake.close()
    clear_test_caches()


def in_browser(scenario: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Run `scenario(page)` in a fresh Chromium on its own thread; return what it observed."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                context = browser.new_context(locale="fr-FR", viewport={"width": 390, "height": 844})
                try:
                    outcome["result"] = scenario(context.new_page())
                finally:
                    context.close()
                    browser.close()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the browser scenario did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_first_use_and_sign_out_in_a_real_browser(fc_server: tuple[str, FakeFranceConnect]) -> None:
    base, fake = fc_server

    def scenario(page: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        page.goto(base + "/connexion/")
        seen["login"] = axe_violations(page)
        page.get_by_role("button", name="S’identifier avec FranceConnect").click()
        page.wait_for_url("**/franceconnect/premiere-connexion/")
        seen["choose"] = axe_violations(page)
        page.get_by_role("button", name="Créer mon compte").click()
        page.wait_for_url("**/compte/")
        seen["account"] = axe_violations(page)
        seen["section"] = page.get_by_role("heading", name="FranceConnect").is_visible()
        page.goto(base + "/franceconnect/deconnexion/")
        seen["logout"] = axe_violations(page)
        page.get_by_role("button", name="Me déconnecter").click()
        page.wait_for_url("**" + LOGOUT_RETURN_PATH + "**")
        seen["signed_out"] = axe_violations(page)
        seen["signed_out_heading"] = page.get_by_role("heading", name="Vous êtes déconnecté").is_visible()
        return seen

    seen = in_browser(scenario)
    for name in ("login", "choose", "account", "logout", "signed_out"):
        assert seen[name] == [], (name, seen[name])
    assert seen["section"] and seen["signed_out_heading"]
    assert FranceConnectLink.objects.get().sub == DEFAULT_IDENTITY["sub"]
    assert fake.end_session_requests[-1]["id_token_hint"] == fake.issued_id_tokens[-1]


def test_linking_an_existing_account_in_a_real_browser(
    fc_server: tuple[str, FakeFranceConnect], make_resident: Any
) -> None:
    """The one-time link flow (issue 9, finding 9): dedicated sign-in page, then confirmation."""
    base, _fake = fc_server
    resident = make_resident("camille.lien@example.org")

    def scenario(page: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        page.goto(base + "/connexion/")
        page.get_by_role("button", name="S’identifier avec FranceConnect").click()
        page.wait_for_url("**/franceconnect/premiere-connexion/")
        page.get_by_role("button", name="J'ai déjà un compte").click()
        page.wait_for_url("**/franceconnect/lier/connexion/?flow=*")
        seen["sign_in"] = axe_violations(page)
        seen["names_identity"] = page.get_by_text(
            "FranceConnect a identifié Angela Claire Louise DUBOIS"
        ).is_visible()
        page.get_by_label("Adresse e-mail").fill(resident.email)
        page.get_by_label("Mot de passe").fill(PASSWORD)
        page.get_by_role("button", name="Se connecter et lier").click()
        page.wait_for_url("**/franceconnect/lier/?flow=*")
        seen["confirm"] = axe_violations(page)
        page.get_by_role("button", name="Lier mon compte").click()
        page.wait_for_url("**/compte/")
        return seen

    seen = in_browser(scenario)
    assert seen["sign_in"] == [] and seen["confirm"] == [], seen
    assert seen["names_identity"]
    assert FranceConnectLink.objects.get().user_id == resident.pk
