"""The cookie-consent API used by partner sites: config, choices, CORS, bad input, rate limit, linking."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client as BrowserClient
from django.utils import timezone

from consent import services as consent_services
from consent.models import EventType, LedgerEvent
from consent.receipts import receipt_for_event, receipt_verify
from consent.selectors import consent_is_granted, consent_is_granted_for_browser
from consent.services import ConsentError, consent_record
from identity.demo import DEMO_CLIENT_NAME
from tests.conftest import PASSWORD
from tests.consent_api.conftest import CHOICES_URL, CONFIG_URL, OTHER_ORIGIN, PARTNER_ORIGIN, post_choices

BROWSING = "personalisation-browsing"
AUDIENCE = "audience-measurement"
PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


# --- config -------------------------------------------------------------------------------------


def test_config_lists_the_cookie_purposes_in_both_languages(api: BrowserClient, partner: Any) -> None:
    response = api.get(CONFIG_URL, {"client_id": partner.client_id}, HTTP_ORIGIN=PARTNER_ORIGIN)
    assert response.status_code == 200
    body = response.json()
    codes = [purpose["code"] for purpose in body["purposes"]]
    assert codes == [BROWSING, AUDIENCE]
    browsing, audience = body["purposes"]
    assert browsing["requires_consent"] is True and browsing["default"] is False
    assert audience["exempt"] is True and audience["default"] is True
    assert browsing["title"]["fr"].startswith("Personnaliser") and browsing["title"]["en"].startswith(
        "Personalise"
    )
    assert browsing["description"]["en"]
    assert browsing["choice_kept_days"] == 183  # about 6 months (CNIL)
    assert browsing["notice"]["version"] >= 1 and len(browsing["notice"]["sha256"]) == 64
    assert body["notice"]["version"] >= 1
    assert body["controllers"][0]["name"] == "Nantes Métropole"
    assert browsing["recipients"]
    assert body["partner"]["name"] == "Billetterie culturelle"
    assert response["Access-Control-Allow-Origin"] == PARTNER_ORIGIN
    assert "Origin" in response["Vary"]
    assert "Set-Cookie" not in response


def test_config_for_an_unknown_or_missing_client_is_a_problem(api: BrowserClient, db: Any) -> None:
    body = assert_problem(api.get(CONFIG_URL, {"client_id": "nope"}), 400)
    assert body["code"] == "unknown_client"
    assert assert_problem(api.get(CONFIG_URL), 400)["code"] == "missing_client_id"


# --- recording choices -----------------------------------------------------------------------------


def test_accepting_records_one_event_per_purpose_with_receipts(
    api: BrowserClient, partner: Any, snapshot: Any
) -> None:
    before = snapshot()
    response = post_choices(
        api, {"client_id": partner.client_id, "choices": {BROWSING: True, AUDIENCE: True}}
    )
    assert response.status_code == 201, response.content
    assert response["Access-Control-Allow-Origin"] == PARTNER_ORIGIN
    assert "Set-Cookie" not in response
    body = response.json()
    browser_id = body["browser_id"]
    assert uuid.UUID(browser_id).version == 4
    assert len(body["receipt_ids"]) == 2
    assert snapshot()["events"] == before["events"] + 2

    events = {e.purpose_code: e for e in LedgerEvent.objects.filter(pk__in=body["receipt_ids"])}
    assert set(events) == {BROWSING, AUDIENCE}
    for event in events.values():
        assert event.event_type == EventType.GIVEN
        assert event.collection_method == "cookie_widget"
        assert event.actor_type == "resident"
        # The partner site is recorded as the event's partner, not as the actor.
        assert event.partner_client_id == partner.client_id
        payload = receipt_verify(receipt_for_event(event))
        assert payload["kantara"]["consentReceiptID"] == str(event.id)
        assert payload["kantara"]["collectionMethod"] == "cookie_widget"
    assert consent_is_granted_for_browser(browser_id=browser_id, purpose_code=BROWSING)

    # The choice is kept about six months, and expires_at says when the widget asks again.
    expected = timezone.now() + timedelta(days=183)
    assert abs(events[BROWSING].valid_until - expected) < timedelta(minutes=1)
    assert body["expires_at"] == events[BROWSING].valid_until.isoformat()

    state = api.get(CHOICES_URL, {"client_id": partner.client_id, "browser_id": browser_id}).json()
    assert state["decided"] is True
    assert state["choices"] == {BROWSING: True, AUDIENCE: True}
    assert state["decisions"][BROWSING]["receipt_id"] == str(events[BROWSING].id)


def test_refusing_all_is_one_request_and_grants_nothing(api: BrowserClient, partner: Any) -> None:
    response = post_choices(api, {"client_id": partner.client_id, "choices": {BROWSING: False}})
    assert response.status_code == 201
    body = response.json()
    assert len(body["receipt_ids"]) == 1
    event = LedgerEvent.objects.get(pk=body["receipt_ids"][0])
    assert event.event_type == EventType.REFUSED
    # The refusal is remembered for the same six months: the banner is not shown again.
    assert abs(event.valid_until - (timezone.now() + timedelta(days=183))) < timedelta(minutes=1)
    assert not consent_is_granted_for_browser(browser_id=body["browser_id"], purpose_code=BROWSING)
    state = api.get(CHOICES_URL, {"client_id": partner.client_id, "browser_id": body["browser_id"]}).json()
    assert state["decided"] is True
    assert state["choices"][BROWSING] is False
    assert state["choices"][AUDIENCE] is True  # exempt: on unless the visitor objects


def test_a_known_browser_keeps_its_id_and_can_change_its_mind(api: BrowserClient, partner: Any) -> None:
    first = post_choices(api, {"client_id": partner.client_id, "choices": {BROWSING: True}}).json()
    assert len(first["browser_secret"]) >= 43  # returned once, kept by the widget
    again = {"client_id": partner.client_id, "browser_id": first["browser_id"], "choices": {BROWSING: False}}
    # Its id travels in authorization URLs: without the secret, nobody changes its choices.
    for wrong in ({}, {"browser_secret": "not-the-secret"}):
        assert assert_problem(post_choices(api, {**again, **wrong}), 403)["code"] == "browser_secret_invalid"
    assert consent_is_granted_for_browser(browser_id=first["browser_id"], purpose_code=BROWSING)
    second = post_choices(api, {**again, "browser_secret": first["browser_secret"]}).json()
    assert second["browser_id"] == first["browser_id"]
    assert "browser_secret" not in second
    assert not consent_is_granted_for_browser(browser_id=first["browser_id"], purpose_code=BROWSING)


def test_objecting_to_the_exempt_audience_measurement(api: BrowserClient, partner: Any) -> None:
    body = post_choices(api, {"client_id": partner.client_id, "choices": {AUDIENCE: False}}).json()
    assert not consent_is_granted_for_browser(browser_id=body["browser_id"], purpose_code=AUDIENCE)


def test_silence_is_refusal(api: BrowserClient, partner: Any, snapshot: Any) -> None:
    browser_id = str(uuid.uuid4())
    before = snapshot()
    state = api.get(CHOICES_URL, {"client_id": partner.client_id, "browser_id": browser_id}).json()
    assert state["decided"] is False
    assert state["choices"] == {BROWSING: False, AUDIENCE: True}
    assert state["expires_at"] is None
    assert consent_is_granted_for_browser(browser_id=browser_id, purpose_code=BROWSING) is False
    assert snapshot() == before  # reading records nothing


def test_a_choice_lapses_after_six_months_without_any_job(
    api: BrowserClient, partner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = post_choices(api, {"client_id": partner.client_id, "choices": {BROWSING: True}}).json()
    browser_id = body["browser_id"]
    assert consent_is_granted_for_browser(browser_id=browser_id, purpose_code=BROWSING)

    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(days=184))
    assert consent_is_granted_for_browser(browser_id=browser_id, purpose_code=BROWSING) is False
    state = api.get(CHOICES_URL, {"client_id": partner.client_id, "browser_id": browser_id}).json()
    assert state["decided"] is False  # the widget asks again
    assert state["choices"][BROWSING] is False


# --- CORS ----------------------------------------------------------------------------------------


def test_preflight_is_answered_for_a_registered_origin_only(api: BrowserClient, partner: Any) -> None:
    allowed = api.options(
        CHOICES_URL + f"?client_id={partner.client_id}",
        HTTP_ORIGIN=PARTNER_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )
    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == PARTNER_ORIGIN
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    assert "Content-Type" in allowed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed
    assert "Origin" in allowed["Vary"]

    for origin, query in (
        (OTHER_ORIGIN, f"?client_id={partner.client_id}"),
        (PARTNER_ORIGIN, "?client_id=unknown"),
        (PARTNER_ORIGIN, ""),
        ("null", f"?client_id={partner.client_id}"),
    ):
        refused = api.options(
            CHOICES_URL + query, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
        )
        assert "Access-Control-Allow-Origin" not in refused, (origin, query)
        assert "Access-Control-Allow-Methods" not in refused


def test_get_from_an_unregistered_origin_gets_no_cors_header(api: BrowserClient, partner: Any) -> None:
    response = api.get(CONFIG_URL, {"client_id": partner.client_id}, HTTP_ORIGIN=OTHER_ORIGIN)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Origin" in response["Vary"]


@pytest.mark.parametrize("origin", [OTHER_ORIGIN, None, "null", "https://billetterie.example.org.evil.net"])
def test_post_from_an_unregistered_origin_is_refused(
    api: BrowserClient, partner: Any, snapshot: Any, origin: str | None
) -> None:
    before = snapshot()
    response = post_choices(api, {"client_id": partner.client_id, "choices": {BROWSING: True}}, origin=origin)
    assert assert_problem(response, 403)["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response
    assert snapshot() == before


def test_an_origin_registered_for_another_client_is_refused(
    api: BrowserClient, partner: Any, make_client: Any, snapshot: Any
) -> None:
    other = make_client(name="Médiathèques").client
    before = snapshot()
    response = post_choices(api, {"client_id": other.client_id, "choices": {BROWSING: True}})
    assert_problem(response, 403)
    assert snapshot() == before


# --- bad input -------------------------------------------------------------------------------------


BAD_BODIES = {
    "unknown client": ({"client_id": "nope", "choices": {BROWSING: True}}, 400, "unknown_client"),
    "missing client": ({"choices": {BROWSING: True}}, 400, "missing_client_id"),
    "missing choices": ({"client_id": "{client}"}, 400, "missing_choices"),
    "empty choices": ({"client_id": "{client}", "choices": {}}, 400, "invalid_choices"),
    "choices not an object": ({"client_id": "{client}", "choices": [BROWSING]}, 400, "invalid_choices"),
    "unknown purpose": ({"client_id": "{client}", "choices": {"marketing": True}}, 400, "unknown_purpose"),
    "not a cookie purpose": (
        {"client_id": "{client}", "choices": {"service-news-email": True}},
        400,
        "unknown_purpose",
    ),
    "string choice": ({"client_id": "{client}", "choices": {BROWSING: "yes"}}, 400, "invalid_choice"),
    "number choice": ({"client_id": "{client}", "choices": {BROWSING: 1}}, 400, "invalid_choice"),
    "null choice": ({"client_id": "{client}", "choices": {BROWSING: None}}, 400, "invalid_choice"),
    "one good one bad": (
        {"client_id": "{client}", "choices": {BROWSING: True, AUDIENCE: "no"}},
        400,
        "invalid_choice",
    ),
    "short browser id": (
        {"client_id": "{client}", "browser_id": "short", "choices": {BROWSING: True}},
        400,
        "invalid_browser_id",
    ),
    "browser id with spaces": (
        {
            "client_id": "{client}",
            "browser_id": "a b c d e f g h i j k l m n o p",
            "choices": {BROWSING: True},
        },
        400,
        "invalid_browser_id",
    ),
    "numeric browser id": (
        {"client_id": "{client}", "browser_id": 12345678901234567890123, "choices": {BROWSING: True}},
        400,
        "invalid_browser_id",
    ),
    "not an object": (["{client}"], 400, "invalid_json"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_input_is_a_problem_and_records_nothing(
    api: BrowserClient, partner: Any, snapshot: Any, case: str
) -> None:
    body, status, code = BAD_BODIES[case]
    body = json.loads(json.dumps(body).replace("{client}", partner.client_id))
    before = snapshot()
    response = post_choices(api, body)
    problem = assert_problem(response, status)
    assert problem["code"] == code
    assert snapshot() == before


def test_malformed_json_oversized_body_and_wrong_media_type(
    api: BrowserClient, partner: Any, snapshot: Any
) -> None:
    before = snapshot()
    assert_problem(post_choices(api, None, raw=b"{not json"), 400)
    big = json.dumps({"client_id": partner.client_id, "choices": {BROWSING: True}, "pad": "x" * 10_000})
    assert assert_problem(post_choices(api, None, raw=big.encode()), 413)["code"] == "body_too_large"
    form = api.post(
        CHOICES_URL,
        {"client_id": partner.client_id, "choices": "x"},
        HTTP_ORIGIN=PARTNER_ORIGIN,
    )
    assert_problem(form, 415)
    assert snapshot() == before


def test_a_failure_half_way_records_nothing(
    api: BrowserClient, partner: Any, snapshot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All events of one submission are one transaction (one batch, consent_record_many): the
    second event fails once the subject row is written and the first event built."""
    calls = {"n": 0}
    build = consent_services._new_event

    def second_call_fails(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConsentError("simulated failure")
        return build(**kwargs)

    monkeypatch.setattr(consent_services, "_new_event", second_call_fails)
    before = snapshot()
    response = post_choices(
        api, {"client_id": partner.client_id, "choices": {BROWSING: True, AUDIENCE: True}}
    )
    assert assert_problem(response, 400)["code"] == "consent_refused"
    assert calls["n"] == 2
    assert snapshot() == before


def test_get_choices_needs_a_well_formed_browser_id(api: BrowserClient, partner: Any) -> None:
    assert_problem(api.get(CHOICES_URL, {"client_id": partner.client_id}), 400)
    assert_problem(api.get(CHOICES_URL, {"client_id": partner.client_id, "browser_id": "x"}), 400)


def test_wrong_method_is_a_problem(api: BrowserClient, partner: Any) -> None:
    assert_problem(api.delete(CHOICES_URL + f"?client_id={partner.client_id}"), 405)


# --- rate limit ------------------------------------------------------------------------------------


def test_posts_are_rate_limited_per_ip(
    api: BrowserClient, partner: Any, settings: Any, snapshot: Any
) -> None:
    settings.CONSENT_COOKIE_RATE_LIMIT = {"per_ip": 3, "window_seconds": 600}
    body = {"client_id": partner.client_id, "choices": {BROWSING: False}}
    query = f"?client_id={partner.client_id}"  # as the widget sends it, for CORS before the body is read
    for _ in range(3):
        assert post_choices(api, body, query=query).status_code == 201
    before = snapshot()
    response = post_choices(api, body, query=query)
    problem = assert_problem(response, 429)
    assert problem["code"] == "rate_limited"
    assert int(response["Retry-After"]) > 0
    assert response["Access-Control-Allow-Origin"] == PARTNER_ORIGIN  # the widget can read the answer
    assert snapshot() == before
    # Another address is not affected.
    other = BrowserClient(REMOTE_ADDR="203.0.113.9")
    assert post_choices(other, body).status_code == 201


# --- visitor receipts ------------------------------------------------------------------------------


def test_a_visitor_downloads_a_receipt_with_their_browser_id(api: BrowserClient, partner: Any) -> None:
    body = post_choices(api, {"client_id": partner.client_id, "choices": {BROWSING: True}}).json()
    receipt_id = body["receipt_ids"][0]
    url = f"/consent/api/v1/cookie/receipts/{receipt_id}"
    response = api.get(url, {"client_id": partner.client_id, "browser_id": body["browser_id"]})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/jose"
    assert receipt_verify(response.content.decode())["jti"] == receipt_id
    other = api.get(url, {"client_id": partner.client_id, "browser_id": str(uuid.uuid4())})
    assert_problem(other, 404)


# --- attaching a browser to an account ---------------------------------------------------------------


def test_a_signed_in_resident_attaches_a_browser_id(partner: Any, resident: Any) -> None:
    anonymous = BrowserClient()
    body = post_choices(anonymous, {"client_id": partner.client_id, "choices": {BROWSING: True}}).json()
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)

    http = BrowserClient(enforce_csrf_checks=True)
    http.force_login(resident)
    link = "/consent/api/v1/cookie/link"
    proof = {"browser_id": body["browser_id"], "browser_secret": body["browser_secret"]}
    refused = http.post(link, proof, content_type="application/json")
    assert_problem(refused, 403)  # no CSRF token
    http.get("/compte/")
    token = http.cookies["csrf"].value
    # The id alone proves nothing (issue 9, finding 3).
    alone = http.post(
        link, {"browser_id": body["browser_id"]}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert assert_problem(alone, 400)["code"] == "browser_secret_invalid"
    response = http.post(link, proof, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content
    linked = response.json()["linked_event_ids"]
    assert len(linked) == 1
    assert LedgerEvent.objects.get(pk=linked[0]).linked_from == uuid.UUID(body["receipt_ids"][0])
    assert consent_is_granted(user=resident, purpose_code=BROWSING)


def test_linking_needs_a_signed_in_resident_and_a_valid_id(resident: Any) -> None:
    anonymous = BrowserClient()
    assert_problem(
        anonymous.post(
            "/consent/api/v1/cookie/link", {"browser_id": str(uuid.uuid4())}, content_type="application/json"
        ),
        403,
    )
    http = BrowserClient()
    http.force_login(resident)
    body = assert_problem(
        http.post("/consent/api/v1/cookie/link", {"browser_id": "bad"}, content_type="application/json"), 400
    )
    assert body["code"] == "invalid_browser_id"


def test_a_choice_made_on_our_own_pages_while_signed_in_goes_to_the_account(
    partner: Any, resident: Any, settings: Any
) -> None:
    issuer = settings.ISSUER
    partner.allowed_origins = issuer
    partner.save(update_fields=["allowed_origins"])
    http = BrowserClient()
    http.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    response = post_choices(
        http, {"client_id": partner.client_id, "choices": {BROWSING: True}}, origin=issuer
    )
    assert response.status_code == 201
    assert response.json()["linked_to_account"] is True
    assert consent_is_granted(user=resident, purpose_code=BROWSING)


def test_a_partner_origin_never_links_the_session(partner: Any, resident: Any) -> None:
    http = BrowserClient()
    http.force_login(resident)
    response = post_choices(http, {"client_id": partner.client_id, "choices": {BROWSING: True}})
    assert response.status_code == 201
    assert response.json()["linked_to_account"] is None
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)


# --- the resident's own receipts ---------------------------------------------------------------------


def test_a_resident_downloads_only_their_own_receipts(
    partner: Any, make_resident: Any, signing_keys: Any
) -> None:
    mine, theirs = make_resident(), make_resident()
    own = consent_record(user=mine, purpose_code=BROWSING, event_type="given", collection_method="web_form")
    other = consent_record(
        user=theirs, purpose_code=BROWSING, event_type="given", collection_method="web_form"
    )

    anonymous = BrowserClient().get(f"/consent/recus/{own.id}.jws")
    assert anonymous.status_code == 302 and "/connexion/" in anonymous["Location"]

    http = BrowserClient()
    http.force_login(mine)
    response = http.get(f"/consent/recus/{own.id}.jws")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/jose"
    assert "attachment" in response["Content-Disposition"]
    assert receipt_verify(response.content.decode())["kantara"]["piiPrincipalId"] == str(own.subject_id)
    assert http.get(f"/consent/recus/{other.id}.jws").status_code == 404
    assert http.get(f"/consent/recus/{uuid.uuid4()}.jws").status_code == 404


# --- the demo partner page ---------------------------------------------------------------------------


def test_the_demo_page_listens_before_the_widget_runs(make_client: Any, settings: Any) -> None:
    """Deferred scripts run in order, and the widget's first cum:consent event can fire as soon
    as widget.js runs: the page's listener (demo.js) must come first, or on a busy machine the
    event goes to nobody (issue 9, finding 11: the flaky banner test read `first` as None)."""
    settings.DEMO_ENABLED = True
    make_client(name=DEMO_CLIENT_NAME)
    html = BrowserClient().get("/consent/demo-widget/").content.decode()
    assert 0 < html.index("consent/demo.js") < html.index("consent/widget.js")
