"""The profiles REST API (/profiles/api/v1/, profiles/api/): every endpoint, every failure path,
and real answers checked against the OpenAPI description.

Everything goes through HTTP and the real services: the resident's session and CSRF token,
the cookie widget's API for a browser's choices and secret, the authorization-code flow for a
partner's access token, Mon compte's decisions for the purposes.
"""

from __future__ import annotations

import json
import time
import types
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st

from common import ratelimit
from consent.models import ConsentState
from consent.selectors import purpose_by_code
from consent.services import consent_record, notice_publish
from identity.oidc import access_tokens
from identity.oidc.sharing import sharing_purpose_code, sharing_withdraw
from profiles.models import DeclaredProfile, Interest, InterestCorrection
from profiles.services import declared_update, page_view_record, subject_of
from tests.conftest import OIDCFlow
from tests.oidc.conftest import complete_flow
from tests.oidc.conftest import signing_keys as signing_keys  # faster keys, re-exported
from tests.oidc.test_rfc7009_revocation import revoke
from tests.profiles.conftest import BROWSING, DECLARED, NEWS, decide
from tests.profiles.openapi import assert_matches_schema, assert_problem_described

pytestmark = pytest.mark.django_db

API = "/profiles/api/v1"
PROBLEM = "application/problem+json"
JSON = "application/json"
PORTAL_ORIGIN = "https://www.nantes.fr"
OTHER_ORIGIN = "https://evil.example.net"
CHOICES_URL = "/consent/api/v1/cookie/choices"
SCOPES = "openid territory interests accessibility"
FULL = {
    "commune": "44109",
    "quartier": "ile-de-nantes",
    "themes": ["culture", "mobility"],
    "language": "en",
    "accessibility": ["larger-text"],
}


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    if code is not None:
        assert body.get("code") == code, body
        assert body["type"] == f"urn:cum:problem:{code}"
    assert_problem_described(response)
    return body


def stored() -> dict[str, int]:
    return {
        "profiles": DeclaredProfile.objects.count(),
        "interests": Interest.objects.count(),
        "corrections": InterestCorrection.objects.count(),
    }


def page_counter(ip: str = "127.0.0.1") -> int:
    window = settings.PROFILES_PAGE_VIEW_RATE_LIMIT["window_seconds"]
    return ratelimit.count("profiles-page-view-ip", ratelimit.ip_bucket(ip), window)


def client_counter(client_id: str) -> int:
    window = settings.PROFILES_PAGE_VIEW_RATE_LIMIT["window_seconds"]
    return ratelimit.count("profiles-page-view-client", client_id, window)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def portal(make_client: Any) -> Any:
    """The territorial portal: a partner client with the profiles scopes and a web origin."""
    registered = make_client(name="Portail nantes.fr", scopes=SCOPES.split())
    registered.client.allowed_origins = f"{PORTAL_ORIGIN} https://nantes.fr"
    registered.client.save(update_fields=["allowed_origins"])
    return registered


@pytest.fixture
def http() -> BrowserClient:
    """A signed-in resident's browser that sends the CSRF token like our pages do."""
    return BrowserClient(enforce_csrf_checks=True)


def signed_in_with_csrf(user: Any) -> tuple[BrowserClient, str]:
    browser = BrowserClient(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/compte/")
    return browser, browser.cookies["csrf"].value


def patch(browser: BrowserClient, token: str, body: Any, **extra: Any) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    extra.setdefault("content_type", "application/json")
    return browser.patch(f"{API}/me/profile", data, HTTP_X_CSRFTOKEN=token, **extra)


def browser_with_choice(portal: Any, grant: bool) -> dict[str, str]:
    """A visitor of the portal who made a choice in the cookie widget (the real API)."""
    response = BrowserClient().post(
        f"{CHOICES_URL}?client_id={portal.client_id}",
        json.dumps({"client_id": portal.client_id, "choices": {BROWSING: grant}}),
        content_type="application/json",
        HTTP_ORIGIN=PORTAL_ORIGIN,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    return {
        "client_id": portal.client_id,
        "browser_id": body["browser_id"],
        "browser_secret": body["browser_secret"],
    }


def post_json(url: str, body: Any, *, origin: str | None = PORTAL_ORIGIN, **extra: Any) -> Any:
    if origin is not None:
        extra["HTTP_ORIGIN"] = origin
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    extra.setdefault("content_type", "application/json")
    return BrowserClient().post(url, data, **extra)


def page_view(body: dict[str, Any], *, query: str = "", **extra: Any) -> Any:
    return post_json(f"{API}/page-views{query}", body, **extra)


VIEW = {"site": "www.nantes.fr", "themes": ["culture", "sport"]}


def resident_token(browser: BrowserClient, rp: Any, scope: str = SCOPES) -> str:
    return complete_flow(OIDCFlow(browser, rp), scope=scope)["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def personalisation(token: str, **extra: Any) -> Any:
    return BrowserClient().get(f"{API}/personalisation", **bearer(token), **extra)


def kinds(body: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (item["kind"], item["value"]["code"] if item["kind"] == "theme" else item["value"])
        for item in body["items"]
    ]


# --- resident: sign-in and CSRF -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/me/profile"),
        ("patch", "/me/profile"),
        ("get", "/me/interests"),
        ("delete", "/me/interests"),
        ("delete", "/me/interests/culture"),
        ("post", "/me/interests/culture/not-interested"),
        ("delete", "/me/interests/culture/not-interested"),
    ],
)
def test_the_resident_api_needs_a_signed_in_resident(method: str, path: str) -> None:
    response = getattr(BrowserClient(), method)(f"{API}{path}", content_type="application/json")
    body = assert_problem(response, 403)
    assert body["detail"]
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", "/me/profile"),
        ("delete", "/me/interests"),
        ("delete", "/me/interests/culture"),
        ("post", "/me/interests/culture/not-interested"),
        ("delete", "/me/interests/culture/not-interested"),
    ],
)
def test_every_resident_write_needs_the_csrf_token(consenting: Any, method: str, path: str) -> None:
    browser = BrowserClient(enforce_csrf_checks=True)
    browser.force_login(consenting)
    page_view_record(
        subject=subject_of(consenting), site="www.nantes.fr", themes=["culture"], viewed_at=timezone.now()
    )
    before = stored()
    response = getattr(browser, method)(
        f"{API}{path}", json.dumps({"commune": "44109"}), content_type="application/json"
    )
    assert "CSRF" in assert_problem(response, 403)["detail"]
    assert stored() == before


# --- resident: declared profile -------------------------------------------------------------------


def test_read_the_declared_profile(consenting: Any) -> None:
    declared_update(user=consenting, changes=FULL)
    browser, _token = signed_in_with_csrf(consenting)
    response = browser.get(f"{API}/me/profile")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = assert_matches_schema(response, "/profiles/api/v1/me/profile", "get")
    assert body["fields"]["commune"] == {"value": "44109", "purpose": DECLARED, "granted": True}
    assert body["fields"]["themes"]["value"] == ["culture", "mobility"]
    assert body["fields"]["notification_frequency"] == {"value": "", "purpose": NEWS, "granted": True}
    assert body["taxonomy_version"] == 1 and body["updated_at"]


def test_update_the_declared_profile(consenting: Any) -> None:
    browser, token = signed_in_with_csrf(consenting)
    response = patch(browser, token, {**FULL, "notification_frequency": "weekly"})
    body = assert_matches_schema(response, "/profiles/api/v1/me/profile", "patch")
    assert body["fields"]["quartier"]["value"] == "ile-de-nantes"
    assert body["fields"]["notification_frequency"]["value"] == "weekly"
    # A partial update, and an empty value clears a field.
    body = patch(browser, token, {"themes": []}).json()
    assert body["fields"]["themes"]["value"] == [] and body["fields"]["commune"]["value"] == "44109"
    assert DeclaredProfile.objects.get(user=consenting).themes == []


def test_a_resident_without_a_profile_reads_empty_fields(resident: Any) -> None:
    browser, _token = signed_in_with_csrf(resident)
    body = assert_matches_schema(browser.get(f"{API}/me/profile"), "/profiles/api/v1/me/profile", "get")
    assert body["fields"]["commune"] == {"value": "", "purpose": DECLARED, "granted": False}
    assert body["updated_at"] is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"commune": "75056"}, "commune"),
        ({"commune": "44143", "quartier": "ile-de-nantes"}, "quartier"),
        ({"themes": ["culture", "astrology"]}, "themes"),
        ({"notification_themes": ["horoscope"]}, "notification_themes"),
        ({"accessibility": ["braille-display"]}, "accessibility"),
        ({"language": "de"}, "language"),
        ({"shoe_size": "42"}, "shoe_size"),
    ],
)
def test_unknown_fields_communes_and_themes_are_refused(consenting: Any, changes: dict, field: str) -> None:
    browser, token = signed_in_with_csrf(consenting)
    body = assert_problem(patch(browser, token, changes), 400, "validation_failed")
    assert field in body["errors"]
    assert stored()["profiles"] == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        (b"commune=44109", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (json.dumps({"commune": "4" * 9000}).encode(), "application/json", 413, "body_too_large"),
    ],
)
def test_a_body_that_is_not_a_small_json_object_is_refused(
    consenting: Any, data: bytes, content_type: str, status: int, code: str
) -> None:
    browser, token = signed_in_with_csrf(consenting)
    assert_problem(patch(browser, token, data, content_type=content_type), status, code)
    assert stored()["profiles"] == 0


def test_a_field_whose_purpose_is_not_granted_is_refused_and_nothing_stored(resident: Any) -> None:
    decide(resident, DECLARED, True)
    browser, token = signed_in_with_csrf(resident)
    response = patch(browser, token, {"commune": "44109", "notification_frequency": "weekly"})
    body = assert_problem(response, 403, "purpose_not_granted")
    assert body["purposes"] == [NEWS]
    assert body["errors"] == {"notification_frequency": NEWS}
    assert stored()["profiles"] == 0
    decide(resident, DECLARED, False)
    body = assert_problem(patch(browser, token, {"commune": "44109"}), 403, "purpose_not_granted")
    assert body["errors"] == {"commune": DECLARED}


# --- resident: interests --------------------------------------------------------------------------


def test_interests_with_their_sources_and_corrections(consenting: Any) -> None:
    subject = subject_of(consenting)
    now = timezone.now()
    for site in ("www.nantes.fr", "www.reze.fr"):
        page_view_record(subject=subject, site=site, themes=["culture"], viewed_at=now)
    browser, token = signed_in_with_csrf(consenting)
    body = assert_matches_schema(browser.get(f"{API}/me/interests"), "/profiles/api/v1/me/interests", "get")
    assert body["purpose_granted"] is True and body["half_life_days"] == 30
    [culture] = body["interests"]
    assert culture["theme"] == "culture" and culture["label"] == "Culture" and culture["views"] == 2
    assert {source["site"] for source in culture["sources"]} == {"www.nantes.fr", "www.reze.fr"}

    response = browser.post(
        f"{API}/me/interests/culture/not-interested", content_type=JSON, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 204
    body = browser.get(f"{API}/me/interests").json()
    assert body["interests"] == [] and body["corrections"] == [{"theme": "culture", "label": "Culture"}]
    # Corrections win over inference.
    assert page_view_record(subject=subject, site="www.nantes.fr", themes=["culture"], viewed_at=now) == []

    response = browser.delete(
        f"{API}/me/interests/culture/not-interested", content_type=JSON, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 204
    assert browser.get(f"{API}/me/interests").json()["corrections"] == []
    page_view_record(subject=subject, site="www.nantes.fr", themes=["culture", "sport"], viewed_at=now)
    assert browser.delete(f"{API}/me/interests/sport", HTTP_X_CSRFTOKEN=token).status_code == 204
    assert [i["theme"] for i in browser.get(f"{API}/me/interests").json()["interests"]] == ["culture"]
    assert browser.delete(f"{API}/me/interests", HTTP_X_CSRFTOKEN=token).status_code == 204
    assert browser.get(f"{API}/me/interests").json()["interests"] == []
    assert stored()["interests"] == 0


def test_interest_labels_follow_the_request_language(consenting: Any) -> None:
    page_view_record(
        subject=subject_of(consenting), site="www.nantes.fr", themes=["mobility"], viewed_at=timezone.now()
    )
    browser, _token = signed_in_with_csrf(consenting)
    body = browser.get(f"{API}/me/interests", HTTP_ACCEPT_LANGUAGE="en").json()
    assert body["interests"][0]["label"] == "Getting around"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/me/interests/astrology/not-interested"),
        ("delete", "/me/interests/astrology/not-interested"),
        ("delete", "/me/interests/astrology"),
    ],
)
def test_an_unknown_theme_is_refused(consenting: Any, method: str, path: str) -> None:
    browser, token = signed_in_with_csrf(consenting)
    body = assert_problem(
        getattr(browser, method)(f"{API}{path}", content_type=JSON, HTTP_X_CSRFTOKEN=token),
        400,
        "validation_failed",
    )
    assert "theme" in body["errors"]
    assert stored()["corrections"] == 0


def test_not_interested_needs_the_browsing_purpose(resident: Any) -> None:
    browser, token = signed_in_with_csrf(resident)
    response = browser.post(
        f"{API}/me/interests/culture/not-interested", content_type=JSON, HTTP_X_CSRFTOKEN=token
    )
    assert assert_problem(response, 403, "purpose_not_granted")["purposes"] == [BROWSING]
    assert stored()["corrections"] == 0
    body = browser.get(f"{API}/me/interests").json()
    assert body == {"purpose_granted": False, "half_life_days": 30, "interests": [], "corrections": []}


# --- public taxonomy ------------------------------------------------------------------------------


def test_the_taxonomy_is_public() -> None:
    response = BrowserClient().get(f"{API}/themes")
    body = assert_matches_schema(response, "/profiles/api/v1/themes", "get")
    assert body["version"] == 1
    assert {"code": "mobility", "fr": "Déplacements", "en": "Getting around"} in body["themes"]
    assert len(body["communes"]) == 24
    nantes = next(c for c in body["communes"] if c["insee_code"] == "44109")
    assert {q["code"] for q in nantes["quartiers"]} >= {"ile-de-nantes", "nantes-nord"}
    larger = next(a for a in body["accessibility"] if a["code"] == "larger-text")
    assert larger["fr"] == "Texte plus grand" and larger["en"] != larger["fr"]


# --- ingestion from a partner page ----------------------------------------------------------------


def test_a_page_view_from_a_partner_page(portal: Any) -> None:
    visitor = browser_with_choice(portal, True)
    response = page_view({**visitor, **VIEW}, query=f"?client_id={portal.client_id}")
    assert response.status_code == 202, response.content
    assert assert_matches_schema(response, "/profiles/api/v1/page-views", "post") == {
        "counted": ["culture", "sport"]
    }
    assert response["Access-Control-Allow-Origin"] == PORTAL_ORIGIN
    assert response["Cache-Control"] == "no-store"
    assert "Origin" in response["Vary"]
    rows = Interest.objects.filter(user__isnull=True)
    assert sorted(rows.values_list("theme", flat=True)) == ["culture", "sport"]
    assert rows.first().sources == {"www.nantes.fr": rows.first().sources["www.nantes.fr"]}
    assert page_counter() == 1


def test_a_browser_that_refused_is_refused_and_nothing_is_stored(portal: Any) -> None:
    visitor = browser_with_choice(portal, False)
    response = page_view({**visitor, **VIEW})
    body = assert_problem(response, 403, "purpose_not_granted")
    assert body["purposes"] == [BROWSING]
    assert response["Access-Control-Allow-Origin"] == PORTAL_ORIGIN  # the page may read why
    assert stored() == {"profiles": 0, "interests": 0, "corrections": 0}
    assert page_counter() == 0  # not even a rate-limit counter


def test_a_browser_never_seen_is_refused(portal: Any) -> None:
    unknown = {"client_id": portal.client_id, "browser_id": "b" * 43, "browser_secret": "s" * 43}
    assert_problem(page_view({**unknown, **VIEW}), 403, "browser_secret_invalid")
    assert stored()["interests"] == 0 and page_counter() == 0


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-" + "x" * 30, 42])
def test_a_browser_without_its_secret_is_refused(portal: Any, secret: Any) -> None:
    visitor = browser_with_choice(portal, True)
    body = {**visitor, **VIEW}
    if secret is None:
        del body["browser_secret"]
    else:
        body["browser_secret"] = secret
    assert_problem(page_view(body), 403, "browser_secret_invalid")
    assert stored()["interests"] == 0 and page_counter() == 0


def test_the_browser_is_never_taken_from_the_address(portal: Any) -> None:
    visitor = browser_with_choice(portal, True)
    query = (
        f"?client_id={portal.client_id}"
        f"&browser_id={visitor['browser_id']}&browser_secret={visitor['browser_secret']}"
    )
    response = page_view({"client_id": portal.client_id, **VIEW}, query=query)
    assert "browser_id" in assert_problem(response, 400, "validation_failed")["errors"]
    assert stored()["interests"] == 0


@pytest.mark.parametrize("origin", [OTHER_ORIGIN, None, "null", "https://www.nantes.fr.evil.example"])
def test_an_origin_not_registered_on_the_client_is_refused(portal: Any, origin: str | None) -> None:
    visitor = browser_with_choice(portal, True)
    response = page_view({**visitor, **VIEW}, origin=origin)
    assert_problem(response, 403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in response
    assert stored()["interests"] == 0 and page_counter() == 0


def test_client_id_problems(portal: Any, make_client: Any) -> None:
    visitor = browser_with_choice(portal, True)
    body = {**visitor, **VIEW}
    assert_problem(page_view({**body, "client_id": "nobody"}), 400, "unknown_client")
    missing = dict(body)
    del missing["client_id"]
    assert_problem(page_view(missing), 400, "missing_client_id")
    other = make_client(name="Autre")
    assert_problem(page_view(body, query=f"?client_id={other.client_id}"), 400, "client_id_mismatch")
    # The client in the address alone is enough.
    assert page_view(missing, query=f"?client_id={portal.client_id}").status_code == 202


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"themes": ["astrology"]}, "themes"),
        ({"themes": []}, "themes"),
        ({"themes": ["culture"] * 6}, "themes"),
        ({"themes": "culture"}, "themes"),
        ({"site": "not a host"}, "site"),
        ({"viewed_at": "yesterday"}, "viewed_at"),
        ({"viewed_at": "2026-01-01T10:00:00"}, "viewed_at"),  # no time zone
        ({"viewed_at": (timezone.now() + timedelta(hours=1)).isoformat()}, "viewed_at"),
        ({"viewed_at": (timezone.now() - timedelta(days=8)).isoformat()}, "viewed_at"),
        ({"referrer": "https://www.nantes.fr/"}, "referrer"),
    ],
)
def test_bad_page_views_are_refused(portal: Any, change: dict, field: str) -> None:
    visitor = browser_with_choice(portal, True)
    body = assert_problem(page_view({**visitor, **VIEW, **change}), 400, "validation_failed")
    assert field in body["errors"]
    assert stored()["interests"] == 0 and page_counter() == 0


def test_a_page_view_in_the_past_is_dated(portal: Any) -> None:
    visitor = browser_with_choice(portal, True)
    at = timezone.now() - timedelta(days=2)
    assert page_view({**visitor, **VIEW, "viewed_at": at.isoformat()}).status_code == 202
    assert Interest.objects.get(theme="culture").last_seen_at == at


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"{", "application/json", 400, "invalid_json"),
        (b'"text"', "application/json", 400, "invalid_json"),
        (b"site=www.nantes.fr", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"{}", "text/plain", 415, "unsupported_media_type"),
        (json.dumps({"site": "a" * 5000}).encode(), "application/json", 413, "body_too_large"),
    ],
)
def test_page_views_are_small_json_objects(
    portal: Any, data: bytes, content_type: str, status: int, code: str
) -> None:
    response = page_view(data, query=f"?client_id={portal.client_id}", content_type=content_type)  # type: ignore[arg-type]
    assert_problem(response, status, code)


def test_accepted_page_views_are_rate_limited_per_address(portal: Any, settings: Any) -> None:
    settings.PROFILES_PAGE_VIEW_RATE_LIMIT = {"per_ip": 2, "per_client": 1000, "window_seconds": 600}
    refused = browser_with_choice(portal, False)
    for _ in range(3):
        assert_problem(page_view({**refused, **VIEW}), 403, "purpose_not_granted")  # never counted
    visitor = browser_with_choice(portal, True)
    assert page_view({**visitor, **VIEW}).status_code == 202
    assert page_view({**visitor, **VIEW}).status_code == 202
    response = page_view({**visitor, **VIEW})
    assert_problem(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert Interest.objects.get(theme="culture").views == 2
    # Another address is counted on its own.
    assert page_view({**visitor, **VIEW}, REMOTE_ADDR="192.0.2.7").status_code == 202


def test_cors_preflight_names_only_the_clients_origins(portal: Any) -> None:
    for path in ("/page-views", "/personalisation"):
        url = f"{API}{path}?client_id={portal.client_id}"
        response = BrowserClient().options(
            url, HTTP_ORIGIN=PORTAL_ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
        )
        assert response.status_code == 204
        assert response["Access-Control-Allow-Origin"] == PORTAL_ORIGIN
        assert "POST" in response["Access-Control-Allow-Methods"]
        assert response["Access-Control-Allow-Headers"] == "Content-Type"  # no Authorization from pages
        assert "Access-Control-Allow-Credentials" not in response
        other = BrowserClient().options(
            url, HTTP_ORIGIN=OTHER_ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
        )
        assert "Access-Control-Allow-Origin" not in other
        unknown = BrowserClient().options(f"{API}{path}", HTTP_ORIGIN=PORTAL_ORIGIN)
        assert "Access-Control-Allow-Origin" not in unknown


# --- ingestion from a partner back-end ------------------------------------------------------------


def test_a_page_view_from_a_partner_back_end(consenting: Any, signed_in: BrowserClient, portal: Any) -> None:
    token = resident_token(signed_in, portal)
    response = page_view(VIEW, origin=None, **bearer(token))
    assert response.status_code == 202, response.content
    assert_matches_schema(response, "/profiles/api/v1/page-views", "post")
    assert "Access-Control-Allow-Origin" not in response
    assert sorted(Interest.objects.filter(user=consenting).values_list("theme", flat=True)) == [
        "culture",
        "sport",
    ]
    assert client_counter(portal.client_id) == 1 and page_counter() == 0
    # The token's own client may be named; the page's fields may not be sent with a token.
    assert page_view({**VIEW, "client_id": portal.client_id}, origin=None, **bearer(token)).status_code == 202
    body = assert_problem(page_view({**VIEW, "browser_id": "x" * 43}, origin=None, **bearer(token)), 400)
    assert "browser_id" in body["errors"]


def test_a_resident_who_did_not_grant_browsing_is_refused(
    resident: Any, signed_in: BrowserClient, portal: Any
) -> None:
    decide(resident, DECLARED, True)
    token = resident_token(signed_in, portal)
    assert_problem(page_view(VIEW, origin=None, **bearer(token)), 403, "purpose_not_granted")
    assert stored()["interests"] == 0 and client_counter(portal.client_id) == 0


def test_browsing_withdrawn_refuses_and_erases(
    consenting: Any, signed_in: BrowserClient, portal: Any
) -> None:
    token = resident_token(signed_in, portal)
    assert page_view(VIEW, origin=None, **bearer(token)).status_code == 202
    decide(consenting, BROWSING, False)
    assert_problem(page_view(VIEW, origin=None, **bearer(token)), 403, "purpose_not_granted")
    assert stored()["interests"] == 0


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "eyJ0eXAiOiJhdCtqd3QifQ.e30.c2ln"],
)
def test_an_invalid_token_is_refused(consenting: Any, token: str) -> None:
    response = page_view(VIEW, origin=None, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_problem(response, 401, "invalid_token")
    assert response["WWW-Authenticate"] == 'Bearer realm="profiles", error="invalid_token"'
    assert stored()["interests"] == 0


def test_a_token_in_the_address_is_refused(consenting: Any, signed_in: BrowserClient, portal: Any) -> None:
    token = resident_token(signed_in, portal)
    response = page_view(VIEW, origin=None, query=f"?access_token={token}")
    assert_problem(response, 400, "invalid_request")
    assert stored()["interests"] == 0


def test_a_revoked_token_is_refused(consenting: Any, signed_in: BrowserClient, portal: Any) -> None:
    token = resident_token(signed_in, portal)
    assert revoke(portal, token, "access_token").status_code == 200
    assert_problem(page_view(VIEW, origin=None, **bearer(token)), 401, "invalid_token")
    assert_problem(personalisation(token), 401, "invalid_token")
    assert stored()["interests"] == 0


def test_an_expired_token_is_refused(
    consenting: Any, signed_in: BrowserClient, portal: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = resident_token(signed_in, portal)
    assert personalisation(token).status_code == 200
    later = time.time() + settings.OAUTH2_PROVIDER["ACCESS_TOKEN_EXPIRE_SECONDS"] + 1
    monkeypatch.setattr(access_tokens, "time", types.SimpleNamespace(time=lambda: later))
    assert_problem(page_view(VIEW, origin=None, **bearer(token)), 401, "invalid_token")
    assert_problem(personalisation(token), 401, "invalid_token")


def test_a_client_token_is_refused(consenting: Any, make_client: Any) -> None:
    machine = make_client(
        name="Passerelle", redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"]
    )
    response = BrowserClient().post(
        "/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=machine.basic_auth()
    )
    token = response.json()["access_token"]
    assert_problem(page_view(VIEW, origin=None, **bearer(token)), 401, "invalid_token")
    assert_problem(personalisation(token), 401, "invalid_token")


def test_the_token_of_another_client_is_refused_for_it(
    consenting: Any, signed_in: BrowserClient, portal: Any, make_client: Any
) -> None:
    other = make_client(name="Médiathèques", scopes=SCOPES.split())
    token = resident_token(signed_in, other)
    response = page_view({**VIEW, "client_id": portal.client_id}, origin=None, **bearer(token))
    assert_problem(response, 403, "client_mismatch")
    assert stored()["interests"] == 0


def test_signing_out_ends_the_token(consenting: Any, signed_in: BrowserClient, portal: Any) -> None:
    token = resident_token(signed_in, portal)
    signed_in.post("/deconnexion/")
    assert_problem(personalisation(token), 401, "invalid_token")


# --- personalisation for a partner back-end -------------------------------------------------------


@pytest.fixture
def profiled(consenting: Any) -> Any:
    """A resident with a declared profile and an inferred interest."""
    declared_update(user=consenting, changes=FULL)
    page_view_record(
        subject=subject_of(consenting), site="www.nantes.fr", themes=["sport"], viewed_at=timezone.now()
    )
    return consenting


def test_personalisation_for_a_resident(profiled: Any, signed_in: BrowserClient, portal: Any) -> None:
    token = resident_token(signed_in, portal)
    response = personalisation(token, HTTP_ORIGIN=PORTAL_ORIGIN)
    body = assert_matches_schema(response, "/profiles/api/v1/personalisation", "get")
    assert response["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in response  # back-ends only
    assert body["subject"] == "resident"
    assert body["purposes"] == {DECLARED: True, BROWSING: True}
    assert kinds(body) == [
        ("commune", {"insee_code": "44109", "name": "Nantes"}),
        ("quartier", {"code": "ile-de-nantes", "name": "Île de Nantes"}),
        ("theme", "culture"),
        ("theme", "mobility"),
        ("accessibility", "larger-text"),
        ("theme", "sport"),
    ]  # the portal language has no scope: not given
    sharing = sharing_purpose_code(portal.client, SCOPES.split())
    for item in body["items"]:
        assert item["reason"]["sharing"] is True and item["reason"]["sharing_purpose"] == sharing
    themes = {item["value"]["code"]: item for item in body["items"] if item["kind"] == "theme"}
    assert themes["culture"]["source"] == "declared" and themes["culture"]["reason"]["purpose"] == DECLARED
    assert themes["sport"]["source"] == "inferred" and themes["sport"]["reason"]["purpose"] == BROWSING
    assert themes["sport"]["weight"] == pytest.approx(1.0, abs=0.01)
    assert themes["sport"]["reason"]["scope"] == "interests"


def test_the_tokens_scopes_decide(profiled: Any, signed_in: BrowserClient, portal: Any) -> None:
    token = resident_token(signed_in, portal, scope="openid territory")
    assert [kind for kind, _value in kinds(personalisation(token).json())] == ["commune", "quartier"]


def test_a_token_without_profiles_scopes_gets_nothing(
    profiled: Any, signed_in: BrowserClient, make_client: Any
) -> None:
    other = make_client(name="Médiathèques", scopes=["openid", "profile"])
    token = resident_token(signed_in, other, scope="openid profile")
    assert personalisation(token).json()["items"] == []


def test_sharing_consent_withdrawn_in_the_ledger_items_disappear(
    profiled: Any, signed_in: BrowserClient, portal: Any
) -> None:
    token = resident_token(signed_in, portal)
    assert personalisation(token).json()["items"]
    code = sharing_purpose_code(portal.client, SCOPES.split())
    consent_record(user=profiled, purpose_code=code, event_type="withdrawn", collection_method="web_form")
    body = personalisation(token).json()  # the token itself is still live
    assert body["items"] == []


def test_withdrawing_the_partner_from_mon_compte_ends_the_token(
    profiled: Any, signed_in: BrowserClient, portal: Any
) -> None:
    token = resident_token(signed_in, portal)
    sharing_withdraw(user=profiled, client=portal.client)
    assert_problem(personalisation(token), 401, "invalid_token")


def test_underlying_purposes_withdrawn_items_disappear(
    profiled: Any, signed_in: BrowserClient, portal: Any
) -> None:
    token = resident_token(signed_in, portal)
    decide(profiled, DECLARED, False)
    body = personalisation(token).json()
    assert body["purposes"] == {DECLARED: False, BROWSING: True}
    assert kinds(body) == [("theme", "sport")]
    decide(profiled, BROWSING, False)
    assert personalisation(token).json()["items"] == []


def test_expired_consent_items_disappear(profiled: Any, signed_in: BrowserClient, portal: Any) -> None:
    token = resident_token(signed_in, portal)
    ConsentState.objects.filter(subject__user=profiled, purpose__code=DECLARED).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert kinds(personalisation(token).json()) == [("theme", "sport")]
    ConsentState.objects.filter(subject__user=profiled, purpose__code=BROWSING).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert personalisation(token).json()["items"] == []
    # Ingestion too: refused, nothing added, no counter.
    before = Interest.objects.get(user=profiled, theme="sport").views
    assert_problem(page_view(VIEW, origin=None, **bearer(token)), 403, "purpose_not_granted")
    assert Interest.objects.get(user=profiled, theme="sport").views == before
    assert client_counter(portal.client_id) == 0


def test_an_expired_sharing_consent_items_disappear(
    profiled: Any, signed_in: BrowserClient, portal: Any
) -> None:
    token = resident_token(signed_in, portal)
    code = sharing_purpose_code(portal.client, SCOPES.split())
    ConsentState.objects.filter(subject__user=profiled, purpose__code=code).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert personalisation(token).json()["items"] == []


def test_material_notice_change_items_disappear(profiled: Any, signed_in: BrowserClient, portal: Any) -> None:
    token = resident_token(signed_in, portal)
    notice_publish(
        purpose=purpose_by_code(BROWSING), text_fr="Nouveau texte", text_en="New text", material=True
    )
    body = personalisation(token).json()
    assert ("theme", "sport") not in kinds(body) and (
        "commune",
        {"insee_code": "44109", "name": "Nantes"},
    ) in kinds(body)
    assert_problem(page_view(VIEW, origin=None, **bearer(token)), 403, "purpose_not_granted")


def test_personalisation_needs_a_token() -> None:
    response = BrowserClient().get(f"{API}/personalisation")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="profiles"'


def test_personalisation_by_a_session_is_refused(profiled: Any) -> None:
    browser, _token = signed_in_with_csrf(profiled)
    assert_problem(browser.get(f"{API}/personalisation"), 401)


# --- personalisation for a partner page (a browser) -----------------------------------------------


def test_personalisation_for_a_browser(portal: Any) -> None:
    visitor = browser_with_choice(portal, True)
    assert page_view({**visitor, "site": "www.nantes.fr", "themes": ["housing"]}).status_code == 202
    response = post_json(f"{API}/personalisation?client_id={portal.client_id}", visitor)
    body = assert_matches_schema(response, "/profiles/api/v1/personalisation", "post")
    assert response["Access-Control-Allow-Origin"] == PORTAL_ORIGIN
    assert response["Cache-Control"] == "no-store"
    assert body["subject"] == "browser" and body["purposes"] == {BROWSING: True}
    [item] = body["items"]
    assert item["kind"] == "theme" and item["source"] == "inferred" and item["value"]["code"] == "housing"
    assert item["reason"] == {"purpose": BROWSING}


def test_personalisation_for_a_browser_that_refused_is_empty(portal: Any) -> None:
    visitor = browser_with_choice(portal, False)
    body = post_json(f"{API}/personalisation", visitor).json()
    assert body["purposes"] == {BROWSING: False} and body["items"] == []


def test_personalisation_for_a_browser_needs_its_proof_and_origin(portal: Any) -> None:
    visitor = browser_with_choice(portal, True)
    assert_problem(
        post_json(f"{API}/personalisation", {**visitor, "browser_secret": "x" * 43}),
        403,
        "browser_secret_invalid",
    )
    assert_problem(
        post_json(f"{API}/personalisation", visitor, origin=OTHER_ORIGIN), 403, "origin_not_allowed"
    )
    body = assert_problem(
        post_json(f"{API}/personalisation", {**visitor, "site": "x"}), 400, "validation_failed"
    )
    assert "site" in body["errors"]
    assert_problem(
        post_json(f"{API}/personalisation", b"{", content_type="application/json"), 400, "invalid_json"
    )


def test_a_browser_linked_to_the_account_brings_its_interests(portal: Any, consenting: Any) -> None:
    """The browser's interests join the account only with its secret (consent's link)."""
    visitor = browser_with_choice(portal, True)
    assert page_view({**visitor, "site": "www.nantes.fr", "themes": ["housing"]}).status_code == 202
    browser, token = signed_in_with_csrf(consenting)
    proof = {"browser_id": visitor["browser_id"], "browser_secret": visitor["browser_secret"]}
    response = browser.post(
        "/consent/api/v1/cookie/link", proof, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 200, response.content
    assert [i["theme"] for i in browser.get(f"{API}/me/interests").json()["interests"]] == ["housing"]
    # From then on the browser speaks for the account: its page views are the account's.
    assert page_view({**visitor, "site": "www.nantes.fr", "themes": ["sport"]}).status_code == 202
    assert not Interest.objects.filter(user__isnull=True).exists()
    themes = [i["theme"] for i in browser.get(f"{API}/me/interests").json()["interests"]]
    assert sorted(themes) == ["housing", "sport"]
    answer = post_json(f"{API}/personalisation", visitor).json()
    assert sorted(item["value"]["code"] for item in answer["items"]) == ["housing", "sport"]
    # ... and under the account's consent.
    decide(consenting, BROWSING, False)
    assert_problem(page_view({**visitor, **VIEW}), 403, "purpose_not_granted")
    assert post_json(f"{API}/personalisation", visitor).json()["items"] == []


# --- never a 500 -------------------------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
page_view_keys = st.sampled_from(
    ["client_id", "browser_id", "browser_secret", "site", "themes", "viewed_at", "x"]
)


@settings_hypothesis(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(page_view_keys, json_values, max_size=6))
def test_any_json_object_gets_an_answer_never_a_500(portal: Any, body: dict[str, Any]) -> None:
    for path in ("/page-views", "/personalisation"):
        response = post_json(f"{API}{path}?client_id={portal.client_id}", body)
        assert response.status_code in (202, 200, 400, 403), response.content[:300]
        if response.status_code >= 400:
            assert_problem(response, response.status_code)


@settings_hypothesis(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(st.sampled_from([*FULL, "notification_themes", "x"]), json_values, max_size=5))
def test_any_profile_update_gets_an_answer_never_a_500(consenting: Any, body: dict[str, Any]) -> None:
    browser = BrowserClient()
    browser.force_login(consenting)
    response = browser.patch(f"{API}/me/profile", json.dumps(body), content_type=JSON)
    assert response.status_code in (200, 400), response.content[:300]


def test_a_token_for_another_resource_server_is_refused(
    consenting: Any, signed_in: BrowserClient, portal: Any, make_client: Any
) -> None:
    api = "https://api.mediatheques.example.org"
    make_client(
        name="API médiathèques",
        redirect_uris=[],
        grant_types=["client_credentials"],
        is_resource_server=True,
        resource_identifier=api,
    )
    token = complete_flow(OIDCFlow(signed_in, portal), scope=SCOPES, resource=api)["access_token"]
    assert access_tokens.decode(token)["aud"] == api
    assert_problem(personalisation(token), 401, "invalid_token")
    assert_problem(page_view(VIEW, origin=None, **bearer(token)), 401, "invalid_token")
    assert stored()["interests"] == 0
