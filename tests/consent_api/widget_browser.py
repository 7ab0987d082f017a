"""The cookie widget's demo partner page in a real headless Chromium (scenarios run by
tests.browser.conftest.in_browser): shared by tests/consent_api/test_browser*.py and
tests/profiles/test_widget_cross_origin.py. The `widget_server` fixture (the demo portal
served by live_server) is in tests/consent_api/conftest.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from identity.demo import DEMO_CLIENT_NAME
from identity.oidc.models import Client
from tests.conftest import PASSWORD, pkce_pair


def events_received(page: Any, count: int) -> None:
    """Wait until the demo page has received `count` cum:consent events (demo.js writes the
    count on <html>): a condition in the page, never a fixed delay. wait_for_function() is
    not used: it would eval() inside the page, which the strict CSP refuses."""
    page.locator(f"html[data-cum-events='{count}']").wait_for(state="attached")


def demo_landing(widget_server: str) -> str:
    """The demo partner page, registered as a redirect URI of the demo client: where a sign-in
    through the partner comes back."""
    client = Client.objects.get(name=DEMO_CLIENT_NAME)
    landing = widget_server + "/consent/demo-widget/"
    client.redirect_uris = f"{client.redirect_uris} {landing}"
    client.save(update_fields=["redirect_uris"])
    return landing


def sign_in_through_the_partner(page: Any, widget_server: str, *, browser_id: str, email: str) -> None:
    """The resident signs in through the demo partner with `consent_browser_id` and allows it;
    back on the partner page (demo_landing), the widget has redeemed the link ticket."""
    client = Client.objects.get(name=DEMO_CLIENT_NAME)
    _verifier, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": widget_server + "/consent/demo-widget/",
            "scope": "openid",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "consent_browser_id": browser_id,
        }
    )
    page.goto(widget_server + "/authorize?" + query)
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("button", name="Autoriser").click()
    page.wait_for_url("**/consent/demo-widget/?*")
    page.locator("html[data-cum-linked='yes']").wait_for(state="attached")
