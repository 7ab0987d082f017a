"""RFC 9700 (OAuth 2.0 Security Best Current Practice): items not covered by the other
specification modules (redirect-URI matching, PKCE, implicit/password grants, refresh-token
rotation and iss are tested with their own specifications)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from django.utils import timezone

from identity.oidc.models import AccessToken, AuthorizationCode, IDToken, RefreshToken
from tests.conftest import OIDCFlow
from tests.oidc.conftest import complete_flow, is_consent_page, location_query, post_token


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def assert_not_frameable(response) -> None:
    """§4.16: clickjacking protection on pages the resident interacts with."""
    assert response.get("X-Frame-Options") == "DENY"
    csp = response.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp


# --- §4.16 clickjacking --------------------------------------------------------------------------


def test_consent_page_cannot_be_framed(flow):
    page = flow.authorize()
    assert is_consent_page(page)
    assert_not_frameable(page)


def test_login_page_reached_from_authorize_cannot_be_framed(rp):
    browser = BrowserClient()
    response = OIDCFlow(browser, rp).authorize()
    assert response.status_code == 302
    assert_not_frameable(browser.get(response["Location"]))


def test_authorization_error_page_cannot_be_framed(flow):
    response = flow.authorize(redirect_uri="https://evil.example.org/cb")
    assert response.status_code == 400
    assert_not_frameable(response)


def test_logout_confirmation_page_cannot_be_framed(flow):
    response = flow.browser.get("/end-session", {"client_id": flow.rp.client_id})
    assert response.status_code == 200
    assert_not_frameable(response)


# --- §2.6 / §4.2.4: no leaking of authorization data -----------------------------------------


def test_authorization_pages_send_a_restrictive_referrer_policy(flow):
    page = flow.authorize()
    assert page.get("Referrer-Policy") in ("no-referrer", "same-origin", "strict-origin")


def test_authorization_responses_are_not_cached(flow):
    page = flow.authorize()
    assert "no-store" in page["Cache-Control"] or "no-cache" in page["Cache-Control"]
    redirect = flow.approve(page)
    assert "no-store" in redirect["Cache-Control"] or "no-cache" in redirect["Cache-Control"]


# --- §4.11: no CORS on the authorization endpoint -------------------------------------------------


@pytest.mark.parametrize("method", ["get", "options"])
def test_no_cors_on_the_authorization_endpoint(flow, method):
    params = flow.authorize_params()
    origin = {"HTTP_ORIGIN": "https://evil.example.org"}
    if method == "options":
        response = flow.browser.options("/authorize", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET", **origin)
    else:
        response = flow.browser.get("/authorize", params, **origin)
    assert not response.has_header("Access-Control-Allow-Origin")
    assert not response.has_header("Access-Control-Allow-Credentials")


def test_no_cors_on_the_consent_decision(flow):
    page = flow.authorize()
    response = flow.browser.post(
        "/authorize/decision",
        {"pending": page.context["pending_id"], "decision": "allow"},
        HTTP_ORIGIN="https://evil.example.org",
    )
    assert not response.has_header("Access-Control-Allow-Origin")


# --- §4.12: 303 after a POST that carried credentials ---------------------------------------


def test_consent_decision_redirects_with_303(flow):
    response = flow.approve(flow.authorize())
    assert response.status_code == 303
    assert "code" in location_query(response)


def test_refusal_redirects_with_303(flow):
    page = flow.authorize()
    response = flow.browser.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    assert response.status_code == 303


def test_post_authorization_request_redirects_with_303(flow):
    complete_flow(flow)
    response = flow.authorize("post")
    assert response.status_code == 303
    assert "code" in location_query(response)


def test_post_authorization_error_redirects_with_303(flow):
    response = flow.authorize("post", code_challenge=None, code_challenge_method=None)
    assert response.status_code == 303
    assert location_query(response)["error"] == ["invalid_request"]


# --- §4.1.3 / §2.1: loopback ports may vary only for native (public) clients ---------------------


def test_loopback_redirect_uri_port_must_match_for_confidential_clients(make_client, signed_in):
    rp = make_client(redirect_uris=["http://127.0.0.1:8080/cb"])
    flow = OIDCFlow(signed_in, rp)
    response = flow.authorize(redirect_uri="http://127.0.0.1:9999/cb")
    assert response.status_code == 400
    assert not response.has_header("Location")


# --- storage of credentials (DESIGN: tokens, codes and secrets hashed at rest) --------------------


def test_access_and_refresh_tokens_are_not_stored_in_plaintext(flow, tokens):
    access = AccessToken.objects.get()
    assert access.token == ""
    assert access.token_checksum == sha256(tokens["access_token"])
    refresh = RefreshToken.objects.get()
    assert refresh.token == ""
    assert refresh.token_checksum == sha256(tokens["refresh_token"])
    for model in (AccessToken, RefreshToken):
        for row in model.objects.values():
            for value in row.values():
                assert value not in (tokens["access_token"], tokens["refresh_token"])


def test_refreshed_tokens_are_not_stored_in_plaintext(flow, tokens):
    body = post_token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=flow.rp.basic_auth()
    ).json()
    assert not AccessToken.objects.filter(token=body["access_token"]).exists()
    assert not RefreshToken.objects.filter(token=body["refresh_token"]).exists()
    assert set(AccessToken.objects.values_list("token", flat=True)) == {""}
    assert set(RefreshToken.objects.values_list("token", flat=True)) == {""}


def test_authorization_code_is_not_stored_in_plaintext(flow):
    code = flow.get_code()
    stored = AuthorizationCode.objects.values_list("code", flat=True).get()
    assert stored != code
    assert code not in stored
    assert stored == sha256(code)


def test_id_token_is_not_stored(flow, tokens):
    for row in IDToken.objects.values():
        assert tokens["id_token"] not in [str(value) for value in row.values()]


def test_authorization_code_lifetime_is_at_most_60_seconds(flow):
    """RFC 6749 §4.1.2: a maximum lifetime of 10 minutes is RECOMMENDED; we promise 60 s."""
    assert settings.OAUTH2_PROVIDER["AUTHORIZATION_CODE_EXPIRE_SECONDS"] <= 60
    before = timezone.now()
    flow.get_code()
    row = AuthorizationCode.objects.get()
    assert row.expires - before <= timedelta(seconds=60, milliseconds=500)


def test_access_token_lifetime_is_short(flow, tokens):
    assert 0 < tokens["expires_in"] <= 3600
