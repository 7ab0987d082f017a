"""The information page of internal services in a real browser, scanned with axe-core.

Sent by an internal metropolitan service, then signed in: the page is scanned on a
phone-sized viewport in French then English (WCAG 2.1 A/AA), the "Continuer" button is
reached with the keyboard, and pressing it sends the browser back to the service with a
code.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.browser.conftest import axe_violations
from tests.conftest import PASSWORD, pkce_pair

pytestmark = pytest.mark.django_db(transaction=True)

SERVICE = "https://demarches.example.fr/cb"


@pytest.fixture
def notice_server(live_server: Any, settings: Any, make_client: Any, make_resident: Any) -> dict[str, str]:
    settings.ISSUER = live_server.url
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    resident = make_resident("camille@example.org")
    client = make_client(
        name="Espace démarches",
        is_internal=True,
        redirect_uris=[SERVICE],
        policy_uri="https://demarches.example.fr/confidentialite",
    ).client
    _verifier, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": SERVICE,
            "scope": "openid profile email",
            "state": "st-1",
            "nonce": "n-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return {
        "base": live_server.url,
        "authorize": f"{live_server.url}/authorize?{query}",
        "email": resident.email,
    }


def test_information_page_is_accessible_and_continues_to_the_service(
    notice_server: dict[str, str], page: Any
) -> None:
    page.goto(notice_server["authorize"])
    page.wait_for_url("**/connexion/**")
    page.get_by_label("Adresse e-mail").fill(notice_server["email"])
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()

    heading = page.get_by_role("heading", level=1)
    heading.wait_for()
    assert "Espace démarches" in heading.inner_text()
    assert page.locator("html").get_attribute("lang") == "fr"
    page.get_by_role("link", name="Politique de confidentialité du Compte unique métropolitain").wait_for()
    assert axe_violations(page) == []

    # English, through the language switcher (it comes back to the same request).
    page.get_by_role("button", name="English – changer de langue").click()
    page.wait_for_selector("html[lang=en]")
    page.get_by_role("heading", name="Why you are not asked to agree").wait_for()
    assert axe_violations(page) == []

    # The single button is reachable with the keyboard and shows where focus is.
    button = page.get_by_role("button", name="Continue")
    for _ in range(40):
        page.keyboard.press("Tab")
        if button.evaluate("element => element === document.activeElement"):
            break
    else:
        pytest.fail("the Continue button cannot be reached with the keyboard")
    outline = button.evaluate(
        "element => { const s = getComputedStyle(element); return s.outlineStyle + ' ' + s.boxShadow; }"
    )
    assert outline.split()[0] != "none" or "rgb" in outline

    # The service's host does not exist here: read where our answer sends the browser.
    with page.expect_response(lambda response: response.url.endswith("/authorize/information")) as answer:
        page.keyboard.press("Enter")
    assert answer.value.status == 303
    location = answer.value.headers["location"]
    assert location.startswith(SERVICE + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st-1"] and query["code"]
