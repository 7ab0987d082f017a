"""RFC 6749 §4.1 (authorization code grant), §2.3/§3.2.1 (client authentication), §5 (token
responses), with the exact redirect-URI matching of RFC 9700 §4.1.3 and OIDC Core §3.1.2.1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from django.utils import timezone

from identity.oidc.models import AuthorizationCode
from tests.conftest import PASSWORD, REDIRECT_URI, OIDCFlow
from tests.oidc.conftest import (
    basic,
    complete_flow,
    is_consent_page,
    location_base,
    location_query,
    post_token,
    userinfo,
)


def assert_error_page(response, error: str | None = None):
    """An error shown to the person: never a redirect to the (unverified) client."""
    assert response.status_code == 400, response.status_code
    assert not response.has_header("Location")
    if error:
        assert error.encode() in response.content


def assert_error_redirect(response, *errors: str):
    assert response.status_code in (302, 303), response.status_code
    assert location_base(response) == REDIRECT_URI
    assert "#" not in response["Location"]
    query = location_query(response)
    assert query["error"][0] in errors, query
    assert "code" not in query and "access_token" not in query and "id_token" not in query
    return query


# --- happy path -----------------------------------------------------------------------------


def test_code_flow_happy_path_echoes_state(flow: OIDCFlow):
    response = flow.authorize()
    assert is_consent_page(response)
    response = flow.approve(response)
    assert response.status_code in (302, 303)
    assert location_base(response) == REDIRECT_URI
    query = location_query(response)
    assert query["state"] == [flow.state]
    assert len(query["code"]) == 1
    token_response = flow.token(query["code"][0])
    assert token_response.status_code == 200, token_response.content
    body = token_response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["access_token"] and body["id_token"]
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0


def test_token_response_has_no_store_cache_headers(flow: OIDCFlow):
    response = flow.token(flow.get_code())
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert response["Content-Type"].startswith("application/json")


def test_token_error_response_has_no_store_cache_headers(flow: OIDCFlow):
    response = flow.token("not-a-code")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "no-store" in response["Cache-Control"]


# --- the code: single use, bound to client and redirect URI, short-lived ----------------------


def test_code_is_single_use(flow: OIDCFlow):
    code = flow.get_code()
    assert flow.token(code).status_code == 200
    second = flow.token(code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


def test_code_reuse_revokes_tokens_issued_from_it(flow: OIDCFlow):
    """RFC 6749 §4.1.2 (SHOULD), OIDC certification oidcc-codereuse."""
    code = flow.get_code()
    first = flow.token(code).json()
    assert userinfo(first["access_token"]).status_code == 200
    assert flow.token(code).status_code == 400
    assert userinfo(first["access_token"]).status_code == 401
    refreshed = post_token(
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=flow.rp.basic_auth(),
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


def test_code_is_bound_to_the_client(flow: OIDCFlow, other_rp):
    code = flow.get_code()
    response = post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
        },
        auth=other_rp.basic_auth(),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # ... and the legitimate client can still redeem it.
    assert flow.token(code).status_code == 200


def test_code_is_bound_to_the_redirect_uri(make_client, signed_in):
    rp = make_client(redirect_uris=[REDIRECT_URI, "https://rp.example.org/other"])
    flow = OIDCFlow(signed_in, rp)
    code = flow.get_code()
    response = flow.token(code, redirect_uri="https://rp.example.org/other")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_token_request_without_redirect_uri_is_refused(flow: OIDCFlow):
    """RFC 6749 §4.1.3: redirect_uri REQUIRED when it was in the authorization request."""
    code = flow.get_code()
    response = flow.token(code, redirect_uri=None)
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_request", "invalid_grant")


def test_expired_code_is_refused(flow: OIDCFlow):
    code = flow.get_code()
    AuthorizationCode.objects.update(expires=timezone.now() - timedelta(seconds=1))
    response = flow.token(code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


# --- the authorization request: client and redirect URI -----------------------------------------


def test_unknown_client_id_shows_error_page(flow: OIDCFlow):
    response = flow.authorize(client_id="no-such-client")
    assert_error_page(response)


def test_missing_client_id_shows_error_page(flow: OIDCFlow):
    response = flow.authorize(client_id=None)
    assert_error_page(response)


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example.org/callback",
        "https://rp.example.org/callback/extra",
        "https://rp.example.org/callback?extra=1",
        "https://rp.example.org/callbackx",
        "https://rp.example.org/call",
        "https://rp.example.org/",
        "http://rp.example.org/callback",
        "https://rp.example.org:444/callback",
        "https://RP.example.org/callback",
        "https://rp.example.org/callback/",
        "https://rp.example.org/callback#x",
    ],
)
def test_unregistered_redirect_uri_shows_error_page_never_redirects(flow: OIDCFlow, uri: str):
    response = flow.authorize(redirect_uri=uri)
    assert_error_page(response)


def test_unregistered_redirect_uri_with_prompt_none_still_never_redirects(flow: OIDCFlow):
    response = flow.authorize(redirect_uri="https://evil.example.org/cb", prompt="none")
    assert_error_page(response)


def test_missing_redirect_uri_shows_error_page(flow: OIDCFlow):
    response = flow.authorize(redirect_uri=None)
    assert_error_page(response)


# --- the authorization request: response type and scope ---------------------------------------


def test_missing_response_type_is_an_error(flow: OIDCFlow):
    response = flow.authorize(response_type=None)
    if response.status_code == 400:
        return  # an error page is also acceptable (oidcc-response-type-missing)
    query = assert_error_redirect(response, "invalid_request", "unsupported_response_type")
    assert query["state"] == [flow.state]


@pytest.mark.parametrize("response_type", ["token", "id_token", "id_token token"])
def test_implicit_response_types_are_unsupported(flow: OIDCFlow, response_type: str):
    response = flow.authorize(response_type=response_type)
    assert_error_redirect(response, "unsupported_response_type")


@pytest.mark.parametrize("response_type", ["code token", "code id_token", "code id_token token"])
def test_hybrid_response_types_return_no_token(flow: OIDCFlow, response_type: str):
    response = flow.authorize(response_type=response_type)
    assert_error_redirect(response, "unsupported_response_type", "unauthorized_client")


def test_scope_not_allowed_for_client_is_invalid_scope(make_client, signed_in):
    rp = make_client(scopes=["openid", "profile"])
    flow = OIDCFlow(signed_in, rp)
    response = flow.authorize(scope="openid email")
    query = assert_error_redirect(response, "invalid_scope")
    assert query["state"] == [flow.state]


def test_unknown_scope_is_invalid_scope(flow: OIDCFlow):
    response = flow.authorize(scope="openid admin")
    assert_error_redirect(response, "invalid_scope")


# --- consent ------------------------------------------------------------------------------------


def test_refusing_consent_returns_access_denied(flow: OIDCFlow):
    page = flow.authorize()
    assert is_consent_page(page)
    response = flow.browser.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    query = assert_error_redirect(response, "access_denied")
    assert query["state"] == [flow.state]


def test_consent_asked_first_time_and_skipped_while_a_token_is_live(flow: OIDCFlow):
    assert is_consent_page(flow.authorize())
    complete_flow(flow)
    again = flow.authorize()
    assert again.status_code in (302, 303)
    assert "code" in location_query(again)


def test_consent_decision_cannot_be_replayed(flow: OIDCFlow):
    page = flow.authorize()
    pending = page.context["pending_id"]
    first = flow.browser.post("/authorize/decision", {"pending": pending, "decision": "allow"})
    assert "code" in location_query(first)
    second = flow.browser.post("/authorize/decision", {"pending": pending, "decision": "allow"})
    assert second.status_code == 400


def test_consent_decision_requires_csrf_token(rp, resident):
    browser = BrowserClient(enforce_csrf_checks=True)
    browser.get("/connexion/")
    csrf = browser.cookies[settings.CSRF_COOKIE_NAME].value
    signed = browser.post(
        "/connexion/", {"username": resident.email, "password": PASSWORD, "csrfmiddlewaretoken": csrf}
    )
    assert signed.status_code == 302
    page = OIDCFlow(browser, rp).authorize()
    assert is_consent_page(page)
    forged = browser.post("/authorize/decision", {"pending": page.context["pending_id"], "decision": "allow"})
    assert forged.status_code == 403


# --- client authentication at the token endpoint ------------------------------------------------


def test_client_secret_basic_works(flow: OIDCFlow):
    code = flow.get_code()
    response = post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
        },
        auth=basic(flow.rp.client_id, flow.rp.secret),
    )
    assert response.status_code == 200, response.content


def test_client_secret_post_works(make_client, signed_in):
    """oidcc-server-client-secret-post, for a client registered with that method."""
    flow = OIDCFlow(signed_in, make_client(token_endpoint_auth_method="client_secret_post"))
    code = flow.get_code()
    response = post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
            "client_id": flow.rp.client_id,
            "client_secret": flow.rp.secret,
        }
    )
    assert response.status_code == 200, response.content


def test_wrong_secret_with_basic_is_401_with_basic_challenge(flow: OIDCFlow):
    code = flow.get_code()
    response = post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
        },
        auth=basic(flow.rp.client_id, "wrong-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")
    assert "no-store" in response["Cache-Control"]


def test_wrong_secret_in_body_is_invalid_client(flow: OIDCFlow):
    code = flow.get_code()
    response = post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
            "client_id": flow.rp.client_id,
            "client_secret": "wrong-secret",
        }
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


def test_confidential_client_without_authentication_is_invalid_client(flow: OIDCFlow):
    code = flow.get_code()
    response = post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
            "client_id": flow.rp.client_id,
        }
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


def test_stored_secret_hash_does_not_authenticate(flow: OIDCFlow):
    code = flow.get_code()
    stored = flow.rp.client.client_secret
    response = post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
        },
        auth=basic(flow.rp.client_id, stored),
    )
    assert response.status_code == 401


# --- grants that are not offered --------------------------------------------------------------


def test_password_grant_is_not_offered(rp, resident):
    response = post_token(
        {"grant_type": "password", "username": resident.email, "password": PASSWORD},
        auth=rp.basic_auth(),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    assert "access_token" not in response.json()


@pytest.mark.parametrize("grant_type", ["implicit", "urn:ietf:params:oauth:grant-type:device_code", "bogus"])
def test_other_grant_types_are_unsupported(rp, grant_type):
    response = post_token({"grant_type": grant_type}, auth=rp.basic_auth())
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_token_endpoint_refuses_get(flow: OIDCFlow):
    response = BrowserClient().get("/token", {"grant_type": "authorization_code"})
    assert response.status_code == 405
