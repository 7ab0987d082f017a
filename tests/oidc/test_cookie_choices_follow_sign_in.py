"""consent_browser_id: a visitor's cookie choices on a partner site follow them when they sign in.

The authorization request only names the browser; the code redirect carries a one-time
`consent_link_ticket` ticket that the widget redeems with the browser's id and secret
(docs/partners.md; the attacks are in tests/security/test_cookie_consent_planting.py).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.test import Client as BrowserClient

from consent.selectors import consent_is_granted
from consent.services import browser_subject_register, consent_record

BROWSING = "personalisation-browsing"


def choose_on_partner_site(
    client: Any, granted: bool = True, browser_id: str | None = None
) -> dict[str, str]:
    browser_id = browser_id or f"browser-{client.pk}-0123456789abcdef"
    secret = browser_subject_register(browser_id=browser_id) or ""
    consent_record(
        purpose_code=BROWSING,
        event_type="given" if granted else "refused",
        collection_method="cookie_widget",
        browser_id=browser_id,
        collected_for=client,
    )
    return {"browser_id": browser_id, "browser_secret": secret}


def link_ticket(flow: Any, **overrides: Any) -> list[str] | None:
    response = flow.authorize(**overrides)
    if response.status_code == 200 and "pending_id" in (response.context or {}):
        response = flow.approve(response)
    query = parse_qs(urlsplit(response["Location"]).query)
    assert "code" in query, query
    return query.get("consent_link_ticket")


def redeem(client: Any, browser: dict[str, str], ticket: str) -> Any:
    body = {"client_id": client.client_id, "link_ticket": ticket, **browser}
    return BrowserClient().post(
        "/consent/api/v1/cookie/attach?client_id=" + client.client_id,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_ORIGIN="https://billetterie.example.org",
    )


def test_choices_made_on_the_partner_site_follow_the_resident_after_sign_in(flow, resident):
    flow.rp.client.allowed_origins = "https://billetterie.example.org"
    flow.rp.client.save(update_fields=["allowed_origins"])
    browser = choose_on_partner_site(flow.rp.client)
    ticket = link_ticket(flow, consent_browser_id=browser["browser_id"])
    assert ticket
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)  # not by the URL alone
    assert redeem(flow.rp.client, browser, ticket[0]).status_code == 200
    assert consent_is_granted(user=resident, purpose_code=BROWSING)


def test_a_browser_id_from_another_partner_site_gets_no_ticket(flow, resident, make_client):
    other = make_client(name="Autre site", redirect_uris=["https://other.example.org/cb"])
    browser = choose_on_partner_site(other.client)
    assert link_ticket(flow, consent_browser_id=browser["browser_id"]) is None
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)


def test_a_browser_without_a_secret_gets_no_ticket(flow, resident):
    """Browsers registered before secrets existed cannot prove anything: never attached."""
    consent_record(
        purpose_code=BROWSING,
        event_type="given",
        collection_method="cookie_widget",
        browser_id="legacy-browser-0123456789abcdef",
        collected_for=flow.rp.client,
    )
    assert link_ticket(flow, consent_browser_id="legacy-browser-0123456789abcdef") is None


def test_a_malformed_or_unknown_browser_id_is_ignored(flow, resident):
    for value in ("not a browser id", "x" * 300, "unknown-browser-0123456789abcdef"):
        assert link_ticket(flow, consent_browser_id=value) is None
    code = flow.get_code(consent_browser_id="not-a-uuid")
    assert flow.token(code).status_code == 200
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)
