"""Finding 3: consent planted in a signed-in resident's ledger through `consent_browser_id`.

The attack: an anonymous POST to the cookie API (Origin forged, as any non-browser client
can) yields a browser id "seen" by the partner; a silent `/authorize?…&prompt=none&
consent_browser_id=<id>` opened in the victim's browser copied the attacker's choices into the
victim's ledger as the resident's own `given` events and linked the attacker's browser to
the victim's account.

The defence (docs/partners.md, "Attaching a visitor's choices to their account"): an
authorization request never links anything by itself. A successful, non-silent
authorization that named a browser gives the partner page a one-time link ticket
(`consent_link_ticket` in the redirect), bound to the resident, the client and that browser; the
widget in the browser that made the choices then redeems it with the browser's secret
(returned once, when the browser was first registered, and kept by the widget only).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client as BrowserClient

from consent.models import LedgerEvent, Subject, SubjectKind
from consent.selectors import consent_is_granted
from consent.services import browser_id_hash
from tests.conftest import PASSWORD, OIDCFlow

BROWSING = "personalisation-browsing"
PARTNER_ORIGIN = "https://billetterie.example.org"
CHOICES_URL = "/consent/api/v1/cookie/choices"
ATTACH_URL = "/consent/api/v1/cookie/attach"
LINK_URL = "/consent/api/v1/cookie/link"


@pytest.fixture(autouse=True)
def _partner_origin(rp: Any) -> None:
    rp.client.allowed_origins = PARTNER_ORIGIN
    rp.client.save(update_fields=["allowed_origins"])


def choose(client_id: str, choices: dict[str, bool], **extra: Any) -> dict[str, Any]:
    """A POST to the real cookie API from a non-browser client (Origin set by hand)."""
    body = {"client_id": client_id, "choices": choices, **extra}
    response = BrowserClient().post(
        CHOICES_URL + "?client_id=" + client_id,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_ORIGIN=PARTNER_ORIGIN,
    )
    assert response.status_code == 201, response.content
    return response.json()


def attach(client_id: str, **body: Any) -> Any:
    return BrowserClient().post(
        ATTACH_URL + "?client_id=" + client_id,
        data=json.dumps({"client_id": client_id, **body}),
        content_type="application/json",
        HTTP_ORIGIN=PARTNER_ORIGIN,
    )


def victim_has_approved(flow: OIDCFlow) -> None:
    """The victim uses the partner normally: the sharing is approved, later requests are silent."""
    flow.get_code()


def browser_subject(browser_id: str) -> Subject:
    return Subject.objects.get(browser_id_hash=browser_id_hash(browser_id), kind=SubjectKind.BROWSER)


def nothing_planted(resident: Any, browser_id: str) -> None:
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)
    assert not LedgerEvent.objects.filter(linked_from__isnull=False).exists()
    assert browser_subject(browser_id).user_id is None


# --- the attack as reported -----------------------------------------------------------------------


def test_silent_authorization_with_an_attackers_browser_id_plants_nothing(
    flow: OIDCFlow, resident: Any
) -> None:
    victim_has_approved(flow)
    attacker = choose(flow.rp.client_id, {BROWSING: True})
    response = flow.authorize(prompt="none", consent_browser_id=attacker["browser_id"])
    assert response.status_code in (302, 303)
    query = parse_qs(urlsplit(response["Location"]).query)
    assert "code" in query  # the silent answer itself still works
    assert "consent_link_ticket" not in query  # never a link ticket on prompt=none
    nothing_planted(resident, attacker["browser_id"])


def test_interactive_authorization_with_an_attackers_browser_id_plants_nothing(
    flow: OIDCFlow, resident: Any
) -> None:
    """Without prompt=none the victim's browser gets a ticket for the attacker's browser, which
    the victim's own widget cannot redeem (another browser) and the attacker never sees."""
    victim_has_approved(flow)
    attacker = choose(flow.rp.client_id, {BROWSING: True})
    response = flow.authorize(consent_browser_id=attacker["browser_id"])
    query = parse_qs(urlsplit(response["Location"]).query)
    assert "code" in query
    nothing_planted(resident, attacker["browser_id"])
    # The victim's widget, holding its own browser, presents the ticket: refused.
    victim = choose(flow.rp.client_id, {BROWSING: False})
    refused = attach(
        flow.rp.client_id,
        browser_id=victim["browser_id"],
        browser_secret=victim["browser_secret"],
        link_ticket=query["consent_link_ticket"][0],
    )
    assert refused.status_code == 400, refused.content
    nothing_planted(resident, attacker["browser_id"])


def test_the_browser_id_alone_never_redeems_a_ticket(flow: OIDCFlow, resident: Any) -> None:
    """A ticket that leaked (e.g. through a Referer) is useless without the browser's secret."""
    own = choose(flow.rp.client_id, {BROWSING: True})
    answer = flow.approve(flow.authorize(consent_browser_id=own["browser_id"]))
    ticket = parse_qs(urlsplit(answer["Location"]).query).get("consent_link_ticket")
    assert ticket
    for wrong in ({}, {"browser_secret": "x" * 43}, {"browser_secret": None}):
        response = attach(flow.rp.client_id, browser_id=own["browser_id"], link_ticket=ticket[0], **wrong)
        assert response.status_code == 400, response.content
    # Used once, even by a failed attempt.
    response = attach(
        flow.rp.client_id,
        browser_id=own["browser_id"],
        browser_secret=own["browser_secret"],
        link_ticket=ticket[0],
    )
    assert response.status_code == 400
    nothing_planted(resident, own["browser_id"])


def test_no_ticket_when_the_authorization_fails(flow: OIDCFlow, resident: Any) -> None:
    own = choose(flow.rp.client_id, {BROWSING: True})
    # Consent refused.
    page = flow.authorize(consent_browser_id=own["browser_id"])
    refused = flow.browser.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    query = parse_qs(urlsplit(refused["Location"]).query)
    assert query["error"] == ["access_denied"] and "consent_link_ticket" not in query
    # An invalid request (no PKCE) and a silent request for a resident who never approved.
    for response in (
        flow.authorize(consent_browser_id=own["browser_id"], code_challenge_method=None, code_challenge=None),
        flow.authorize(consent_browser_id=own["browser_id"], prompt="none"),
    ):
        query = parse_qs(urlsplit(response["Location"]).query)
        assert "error" in query and "consent_link_ticket" not in query
    nothing_planted(resident, own["browser_id"])
    assert not any("browser" in key for key, _value in flow.browser.session.items())


def test_the_authorization_request_leaves_nothing_in_the_session(flow: OIDCFlow, resident: Any) -> None:
    victim_has_approved(flow)
    own = choose(flow.rp.client_id, {BROWSING: True})
    flow.authorize(prompt="none", consent_browser_id=own["browser_id"])
    flow.authorize(consent_browser_id=own["browser_id"])
    assert not any("browser" in key for key, _value in flow.browser.session.items())
    nothing_planted(resident, own["browser_id"])


def test_a_choice_for_a_known_browser_needs_its_secret(rp: Any) -> None:
    """Writing under someone else's browser id (it travels in authorization URLs) is refused."""
    own = choose(rp.client_id, {BROWSING: False})
    forged = BrowserClient().post(
        CHOICES_URL + "?client_id=" + rp.client_id,
        data=json.dumps(
            {"client_id": rp.client_id, "browser_id": own["browser_id"], "choices": {BROWSING: True}}
        ),
        content_type="application/json",
        HTTP_ORIGIN=PARTNER_ORIGIN,
    )
    assert forged.status_code == 403, forged.content
    assert forged.json()["code"] == "browser_secret_invalid"
    again = choose(
        rp.client_id, {BROWSING: True}, browser_id=own["browser_id"], browser_secret=own["browser_secret"]
    )
    assert again["browser_id"] == own["browser_id"] and "browser_secret" not in again


def test_the_session_link_endpoint_needs_the_browser_secret(rp: Any, resident: Any) -> None:
    """POST /cookie/link (same-site, session + CSRF): the browser id alone proves nothing."""
    attacker = choose(rp.client_id, {BROWSING: True})
    http = BrowserClient()
    http.force_login(resident)
    response = http.post(LINK_URL, {"browser_id": attacker["browser_id"]}, content_type="application/json")
    assert response.status_code == 400, response.content
    wrong = {"browser_id": attacker["browser_id"], "browser_secret": "y" * 43}
    assert http.post(LINK_URL, wrong, content_type="application/json").status_code == 400
    nothing_planted(resident, attacker["browser_id"])


# --- the honest path ------------------------------------------------------------------------------


def test_the_residents_own_widget_attaches_its_choices_after_sign_in(
    client: BrowserClient, resident: Any, rp: Any
) -> None:
    own = choose(rp.client_id, {BROWSING: True})
    assert "browser_secret" in own and own["browser_secret"] != own["browser_id"]
    flow = OIDCFlow(client, rp)
    response = flow.authorize(consent_browser_id=own["browser_id"])  # not signed in yet
    assert response.status_code == 302 and "/connexion/" in response["Location"]
    login = client.post(response["Location"], {"username": resident.email, "password": PASSWORD})
    assert login.status_code == 302
    page = client.get(login["Location"])
    answer = flow.approve(page)
    query = parse_qs(urlsplit(answer["Location"]).query)
    assert "code" in query and query["consent_link_ticket"]
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)  # nothing before the proof
    response = attach(
        rp.client_id,
        browser_id=own["browser_id"],
        browser_secret=own["browser_secret"],
        link_ticket=query["consent_link_ticket"][0],
    )
    assert response.status_code == 200, response.content
    assert len(response.json()["linked_event_ids"]) == 1
    assert consent_is_granted(user=resident, purpose_code=BROWSING)
    assert browser_subject(own["browser_id"]).user_id == resident.pk
    # The ticket is used once.
    again = attach(
        rp.client_id,
        browser_id=own["browser_id"],
        browser_secret=own["browser_secret"],
        link_ticket=query["consent_link_ticket"][0],
    )
    assert again.status_code == 400


def test_a_ticket_is_bound_to_its_client(flow: OIDCFlow, resident: Any, make_client: Any) -> None:
    own = choose(flow.rp.client_id, {BROWSING: True})
    query = parse_qs(
        urlsplit(flow.approve(flow.authorize(consent_browser_id=own["browser_id"]))["Location"]).query
    )
    other = make_client(name="Autre site", redirect_uris=["https://other.example.org/cb"])
    other.client.allowed_origins = PARTNER_ORIGIN
    other.client.save(update_fields=["allowed_origins"])
    response = attach(
        other.client_id,
        browser_id=own["browser_id"],
        browser_secret=own["browser_secret"],
        link_ticket=query["consent_link_ticket"][0],
    )
    assert response.status_code == 400
    nothing_planted(resident, own["browser_id"])


# --- every failure of the attach call -------------------------------------------------------------


def test_attach_refuses_bad_input_and_writes_nothing(flow: OIDCFlow, resident: Any) -> None:
    own = choose(flow.rp.client_id, {BROWSING: True})
    answer = flow.approve(flow.authorize(consent_browser_id=own["browser_id"]))
    ticket = parse_qs(urlsplit(answer["Location"]).query)["consent_link_ticket"][0]
    proof = {"browser_id": own["browser_id"], "browser_secret": own["browser_secret"]}
    cases = [
        (attach(flow.rp.client_id, **proof), 400, "invalid_link"),  # no ticket
        (attach(flow.rp.client_id, **proof, link_ticket=["a list"]), 400, "invalid_link"),
        (attach(flow.rp.client_id, browser_id="bad", link_ticket=ticket), 400, "invalid_browser_id"),
        (attach(flow.rp.client_id, browser_secret=own["browser_secret"], link_ticket=ticket), 400, None),
        (attach(flow.rp.client_id, **proof, link_ticket="forged-" + "x" * 40), 400, "invalid_link"),
    ]
    unknown = BrowserClient().post(
        ATTACH_URL + "?client_id=nobody",
        data=json.dumps({"client_id": "nobody", "link_ticket": ticket, **proof}),
        content_type="application/json",
        HTTP_ORIGIN=PARTNER_ORIGIN,
    )
    cases.append((unknown, 400, "unknown_client"))
    elsewhere = BrowserClient().post(
        ATTACH_URL + "?client_id=" + flow.rp.client_id,
        data=json.dumps({"client_id": flow.rp.client_id, "link_ticket": ticket, **proof}),
        content_type="application/json",
        HTTP_ORIGIN="https://evil.example.net",
    )
    cases.append((elsewhere, 403, "origin_not_allowed"))
    not_json = BrowserClient().post(
        ATTACH_URL + "?client_id=" + flow.rp.client_id,
        data="{",
        content_type="application/json",
        HTTP_ORIGIN=PARTNER_ORIGIN,
    )
    cases.append((not_json, 400, "invalid_json"))
    for response, status, code in cases:
        assert response.status_code == status, response.content
        assert response["Content-Type"].startswith("application/problem+json")
        if code:
            assert response.json()["code"] == code
    nothing_planted(resident, own["browser_id"])
    # None of these used the ticket up (they never reached it): the widget's own call works.
    ok = attach(flow.rp.client_id, **proof, link_ticket=ticket)
    assert ok.status_code == 200, ok.content


def test_a_ticket_for_an_account_closed_since_attaches_nothing(flow: OIDCFlow, resident: Any) -> None:
    own = choose(flow.rp.client_id, {BROWSING: True})
    answer = flow.approve(flow.authorize(consent_browser_id=own["browser_id"]))
    ticket = parse_qs(urlsplit(answer["Location"]).query)["consent_link_ticket"][0]
    resident.is_active = False
    resident.save(update_fields=["is_active"])
    proof = {"browser_id": own["browser_id"], "browser_secret": own["browser_secret"]}
    response = attach(flow.rp.client_id, **proof, link_ticket=ticket)
    assert response.status_code == 400
    nothing_planted(resident, own["browser_id"])


def test_our_own_pages_attach_a_known_browser_only_with_its_secret(
    rp: Any, resident: Any, settings: Any
) -> None:
    """The same-origin shortcut (a signed-in resident choosing on our pages) needs the proof too."""
    rp.client.allowed_origins = settings.ISSUER
    rp.client.save(update_fields=["allowed_origins"])
    own = choose_from(rp.client_id, settings.ISSUER)
    http = BrowserClient()
    http.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    body = {"client_id": rp.client_id, "browser_id": own["browser_id"], "choices": {BROWSING: True}}
    without = http.post(
        CHOICES_URL + "?client_id=" + rp.client_id,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_ORIGIN=settings.ISSUER,
    )
    assert without.status_code == 403
    nothing_planted(resident, own["browser_id"])
    proven = http.post(
        CHOICES_URL + "?client_id=" + rp.client_id,
        data=json.dumps({**body, "browser_secret": own["browser_secret"]}),
        content_type="application/json",
        HTTP_ORIGIN=settings.ISSUER,
    )
    assert proven.status_code == 201 and proven.json()["linked_to_account"] is True
    assert consent_is_granted(user=resident, purpose_code=BROWSING)


def choose_from(client_id: str, origin: str) -> dict[str, Any]:
    response = BrowserClient().post(
        CHOICES_URL + "?client_id=" + client_id,
        data=json.dumps({"client_id": client_id, "choices": {BROWSING: False}}),
        content_type="application/json",
        HTTP_ORIGIN=origin,
    )
    assert response.status_code == 201, response.content
    return response.json()
