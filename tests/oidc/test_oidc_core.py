"""OpenID Connect Core 1.0: ID token (§2, §3.1.3.6-7), authentication request parameters
(§3.1.2.1: prompt, max_age, display, ui_locales, claims_locales, login_hint, acr_values,
id_token_hint), authentication errors (§3.1.2.6), request objects (§6), UserInfo (§5.3)
with RFC 6750 bearer token usage, standard claims per scope (§5.4)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from jwcrypto import jwk, jwt
from jwcrypto.common import JWException

from identity.sessions import SESSION_AUTH_TIME
from tests.conftest import REDIRECT_URI, OIDCFlow, verify_id_token
from tests.oidc.conftest import (
    complete_flow,
    expected_sub,
    is_consent_page,
    location_base,
    location_query,
    post_token,
    sign_in,
    userinfo,
)


def jose_header(raw: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(raw.split(".")[0] + "==="))


def set_session_auth_time(browser: BrowserClient, seconds_ago: int) -> int:
    """Pretend the resident authenticated `seconds_ago` seconds ago."""
    session = browser.session
    value = int(time.time()) - seconds_ago
    session[SESSION_AUTH_TIME] = value
    session.save()
    return value


def assert_error_redirect(response: Any, error: str, state: str) -> dict[str, list[str]]:
    assert response.status_code in (302, 303), response.status_code
    assert location_base(response) == REDIRECT_URI
    query = location_query(response)
    assert query["error"] == [error], query
    assert query["state"] == [state]
    assert query["iss"] == [settings.ISSUER]
    assert "code" not in query
    return query


def is_login_redirect(response: Any) -> bool:
    if response.status_code not in (302, 303):
        return False
    return urlsplit(response["Location"]).path == "/connexion/"


def login_and_resume(browser: BrowserClient, response: Any, email: str) -> Any:
    """Sign in on the login page we were sent to, then follow the redirect back to /authorize."""
    assert is_login_redirect(response), response.get("Location")
    back = sign_in(browser, email, response["Location"])
    assert urlsplit(back["Location"]).path == "/authorize", back["Location"]
    return browser.get(back["Location"])


def claims_of(flow: OIDCFlow, body: dict[str, Any]) -> dict[str, Any]:
    return verify_id_token(body["id_token"], flow.rp.client_id)


# --- ID token ---------------------------------------------------------------------------------


def test_id_token_signature_verifies_with_published_jwks(flow, tokens):
    claims = claims_of(flow, tokens)
    assert claims["sub"]


def test_id_token_is_rs256_by_default_with_a_published_kid(flow, tokens):
    header = jose_header(tokens["id_token"])
    assert header["alg"] == "RS256"
    jwks = BrowserClient().get("/jwks.json").json()
    kids = {key["kid"]: key for key in jwks["keys"]}
    assert header["kid"] in kids
    assert kids[header["kid"]]["kty"] == "RSA"


def test_id_token_is_never_unsigned(flow, tokens):
    header = jose_header(tokens["id_token"])
    assert header["alg"].lower() != "none"
    assert tokens["id_token"].count(".") == 2 and tokens["id_token"].split(".")[2]


def test_id_token_with_a_modified_payload_does_not_verify(flow, tokens):
    header, payload, signature = tokens["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
    claims["sub"] = "someone-else"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(JWException):
        verify_id_token(f"{header}.{forged_payload}.{signature}", flow.rp.client_id)


def test_id_token_required_claims(flow, tokens, resident):
    claims = claims_of(flow, tokens)
    assert claims["iss"] == settings.ISSUER
    aud = claims["aud"]
    assert aud == flow.rp.client_id or (isinstance(aud, list) and flow.rp.client_id in aud)
    if isinstance(aud, list) and len(aud) > 1:
        assert claims["azp"] == flow.rp.client_id
    assert claims["sub"] == expected_sub(flow.rp, resident)
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert claims["exp"] > claims["iat"]
    assert abs(claims["iat"] - time.time()) < 60
    assert claims["exp"] > time.time()


def test_nonce_is_echoed(flow, tokens):
    assert claims_of(flow, tokens)["nonce"] == flow.nonce


def test_request_without_nonce_succeeds_and_has_no_nonce(flow):
    """oidcc-ensure-request-without-nonce-succeeds-for-code-flow."""
    body = complete_flow(flow, nonce=None)
    assert "nonce" not in claims_of(flow, body)


def test_auth_time_is_the_real_sign_in_time(rp, resident):
    browser = BrowserClient()
    before = int(time.time())
    sign_in(browser, resident.email)
    after = int(time.time())
    flow = OIDCFlow(browser, rp)
    body = complete_flow(flow)
    auth_time = claims_of(flow, body)["auth_time"]
    assert before <= auth_time <= after


def test_auth_time_is_not_the_token_issuance_time(flow):
    signed_at = set_session_auth_time(flow.browser, 300)
    body = complete_flow(flow)
    assert claims_of(flow, body)["auth_time"] == signed_at


def test_at_hash_matches_the_access_token(flow, tokens):
    claims = claims_of(flow, tokens)
    digest = hashlib.sha256(tokens["access_token"].encode("ascii")).digest()
    expected = base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()
    assert claims["at_hash"] == expected


def test_id_token_from_another_issuer_key_does_not_verify(flow, tokens):
    foreign = jwk.JWK.generate(kty="RSA", size=2048, kid=jose_header(tokens["id_token"])["kid"])
    claims = claims_of(flow, tokens)
    forged = jwt.JWT(header={"alg": "RS256", "kid": foreign["kid"]}, claims=claims)
    forged.make_signed_token(foreign)
    with pytest.raises(JWException):
        verify_id_token(forged.serialize(), flow.rp.client_id)


# --- UserInfo -------------------------------------------------------------------------------


def test_userinfo_by_get(flow, tokens, resident):
    response = userinfo(tokens["access_token"])
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["sub"] == expected_sub(flow.rp, resident) == claims_of(flow, tokens)["sub"]


def test_userinfo_by_post_with_authorization_header(flow, tokens, resident):
    response = userinfo(tokens["access_token"], "post")
    assert response.status_code == 200
    assert response.json()["sub"] == expected_sub(flow.rp, resident)


def test_userinfo_by_post_with_token_in_form_body(flow, tokens, resident):
    """oidcc-userinfo-post-body; RFC 6750 §2.2 form-encoded body parameter."""
    response = userinfo(tokens["access_token"], body=True)
    assert response.status_code == 200, response.content
    assert response.json()["sub"] == expected_sub(flow.rp, resident)


def test_userinfo_refuses_token_in_query_string(tokens):
    """RFC 9700 §4.3.2 / RFC 6750 §2.3: no access token in the URI."""
    response = BrowserClient().get("/userinfo", {"access_token": tokens["access_token"]})
    assert response.status_code in (400, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "sub" not in response.json()


def test_userinfo_refuses_token_in_query_string_of_a_post(tokens):
    response = BrowserClient().post(f"/userinfo?access_token={tokens['access_token']}")
    assert response.status_code in (400, 401)
    assert "sub" not in response.json()


def test_userinfo_without_token_is_401_with_bearer_challenge():
    response = BrowserClient().get("/userinfo")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_userinfo_with_invalid_token_is_401_invalid_token(db):
    response = userinfo("not-a-token")
    assert response.status_code == 401
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert 'error="invalid_token"' in challenge


def test_userinfo_response_is_not_cached(tokens):
    assert "no-store" in userinfo(tokens["access_token"])["Cache-Control"]


def test_client_credentials_token_gets_no_userinfo(make_client):
    machine = make_client(
        name="Machine", redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"]
    )
    token = post_token({"grant_type": "client_credentials"}, auth=machine.basic_auth()).json()["access_token"]
    response = userinfo(token)
    assert response.status_code in (401, 403)


def test_inactive_residents_tokens_stop_working_at_userinfo(tokens, resident):
    assert userinfo(tokens["access_token"]).status_code == 200
    resident.is_active = False
    resident.save(update_fields=["is_active"])
    response = userinfo(tokens["access_token"])
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


# --- standard claims by scope (§5.4) --------------------------------------------------------------


def test_openid_scope_alone_releases_only_sub(flow, resident):
    body = complete_flow(flow, scope="openid")
    info = userinfo(body["access_token"]).json()
    assert info == {"sub": expected_sub(flow.rp, resident)}
    id_claims = claims_of(flow, body)
    for claim in ("email", "email_verified", "given_name", "family_name", "name"):
        assert claim not in id_claims


def test_profile_scope_releases_names(flow, resident):
    body = complete_flow(flow, scope="openid profile")
    info = userinfo(body["access_token"]).json()
    assert info["given_name"] == resident.given_name
    assert info["family_name"] == resident.family_name
    assert info["name"] == f"{resident.given_name} {resident.family_name}"
    assert "email" not in info and "email_verified" not in info


def test_email_scope_releases_email(flow, resident):
    body = complete_flow(flow, scope="openid email")
    info = userinfo(body["access_token"]).json()
    assert info["email"] == resident.email
    assert info["email_verified"] is True
    assert "given_name" not in info and "family_name" not in info and "name" not in info


def test_all_scopes_release_all_claims(flow, tokens, resident):
    info = userinfo(tokens["access_token"]).json()
    assert {"sub", "email", "email_verified", "given_name", "family_name", "name"} <= set(info)


def test_authentication_request_without_openid_scope_is_plain_oauth(flow):
    """Without `openid` the request is OAuth 2.0 only: no ID token (§3.1.2.1)."""
    body = complete_flow(flow, scope="profile")
    assert "id_token" not in body


# --- authentication request parameters ---------------------------------------------------------


def test_unknown_parameters_are_ignored(flow):
    """oidcc-ensure-request-with-unknown-parameter-succeeds."""
    body = complete_flow(flow, extra="foobar", vendor_specific_thing="1")
    assert claims_of(flow, body)["sub"]


def test_post_to_the_authorization_endpoint_works(flow):
    """oidcc-ensure-post-request-succeeds; §3.1.2.1: GET and POST MUST be supported."""
    response = flow.authorize("post")
    assert is_consent_page(response)
    code = flow.code_from(flow.approve(response))
    assert flow.token(code).status_code == 200


def test_post_to_the_authorization_endpoint_when_signed_out_resumes_after_login(rp, resident):
    browser = BrowserClient()
    flow = OIDCFlow(browser, rp)
    response = flow.authorize("post")
    page = login_and_resume(browser, response, resident.email)
    assert is_consent_page(page)
    code = flow.code_from(flow.approve(page))
    assert flow.token(code).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"display": "page"},
        {"display": "popup"},
        {"ui_locales": "en-GB fr"},
        {"claims_locales": "fr en"},
        {"login_hint": "camille@example.org"},
        {"acr_values": "eidas1"},
        {"response_mode": "query"},
    ],
    ids=lambda params: next(iter(params)),
)
def test_optional_parameters_are_accepted(flow, params):
    body = complete_flow(flow, **params)
    assert claims_of(flow, body)["sub"]


def test_login_hint_is_accepted_when_signed_out(rp, resident):
    browser = BrowserClient()
    flow = OIDCFlow(browser, rp)
    response = flow.authorize(login_hint=resident.email)
    assert is_login_redirect(response)
    page = login_and_resume(browser, response, resident.email)
    assert is_consent_page(page)


def test_request_object_is_not_supported(flow):
    response = flow.authorize(request="eyJhbGciOiJub25lIn0.eyJmb28iOiJiYXIifQ.")
    assert_error_redirect(response, "request_not_supported", flow.state)


def test_request_uri_is_not_supported(flow):
    response = flow.authorize(request_uri="https://rp.example.org/request.jwt")
    assert_error_redirect(response, "request_uri_not_supported", flow.state)


# --- prompt ---------------------------------------------------------------------------------


def test_prompt_none_when_not_signed_in_is_login_required(rp):
    flow = OIDCFlow(BrowserClient(), rp)
    response = flow.authorize(prompt="none")
    assert_error_redirect(response, "login_required", flow.state)


def test_prompt_none_when_signed_in_with_known_consent_is_silent(flow, tokens):
    first_sub = claims_of(flow, tokens)["sub"]
    response = flow.authorize(prompt="none")
    code = flow.code_from(response)
    body = flow.token(code).json()
    assert claims_of(flow, body)["sub"] == first_sub


def test_prompt_none_with_id_token_hint_is_silent(flow, tokens):
    """oidcc-id-token-hint."""
    response = flow.authorize(prompt="none", id_token_hint=tokens["id_token"])
    code = flow.code_from(response)
    body = flow.token(code).json()
    assert claims_of(flow, body)["sub"] == claims_of(flow, tokens)["sub"]


def test_prompt_none_when_consent_is_needed_is_consent_required(flow):
    response = flow.authorize(prompt="none")
    assert_error_redirect(response, "consent_required", flow.state)


def test_prompt_none_combined_with_another_value_is_invalid_request(flow, tokens):
    response = flow.authorize(prompt="none login")
    assert_error_redirect(response, "invalid_request", flow.state)


def test_prompt_consent_asks_again(flow, tokens):
    assert is_consent_page(flow.authorize(prompt="consent"))


def test_prompt_login_forces_reauthentication_and_later_auth_time(flow, resident):
    earlier = set_session_auth_time(flow.browser, 600)
    first = complete_flow(flow)
    assert claims_of(flow, first)["auth_time"] == earlier
    response = flow.authorize(prompt="login")
    before_login = int(time.time())
    page = login_and_resume(flow.browser, response, resident.email)
    body = flow.token(flow.code_from(page)).json()
    auth_time = claims_of(flow, body)["auth_time"]
    assert auth_time >= before_login > earlier


def test_prompt_login_does_not_loop(flow, resident):
    """After signing in, the resumed request must not ask for login again."""
    response = flow.authorize(prompt="login")
    page = login_and_resume(flow.browser, response, resident.email)
    assert not is_login_redirect(page)


# --- max_age --------------------------------------------------------------------------------


def test_max_age_exceeded_forces_reauthentication(flow, resident):
    complete_flow(flow)
    earlier = set_session_auth_time(flow.browser, 5)
    response = flow.authorize(max_age="1")
    before_login = int(time.time())
    page = login_and_resume(flow.browser, response, resident.email)
    body = flow.token(flow.code_from(page)).json()
    auth_time = claims_of(flow, body)["auth_time"]  # REQUIRED when max_age was sent
    assert auth_time >= before_login > earlier


def test_max_age_not_exceeded_needs_no_login(flow):
    complete_flow(flow)
    signed_at = set_session_auth_time(flow.browser, 5)
    response = flow.authorize(max_age="10000")
    body = flow.token(flow.code_from(response)).json()
    assert claims_of(flow, body)["auth_time"] == signed_at


def test_max_age_with_prompt_none_and_old_session_is_login_required(flow):
    complete_flow(flow)
    set_session_auth_time(flow.browser, 5)
    response = flow.authorize(max_age="1", prompt="none")
    assert_error_redirect(response, "login_required", flow.state)


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_invalid_max_age_is_invalid_request(flow, value):
    response = flow.authorize(max_age=value)
    assert_error_redirect(response, "invalid_request", flow.state)


def test_sub_is_stable_across_sessions(rp, resident):
    subs = set()
    for _ in range(2):
        browser = BrowserClient()
        sign_in(browser, resident.email)
        flow = OIDCFlow(browser, rp)
        subs.add(claims_of(flow, complete_flow(flow))["sub"])
    assert len(subs) == 1


def test_authorization_endpoint_redirects_with_code_in_query_not_fragment(flow):
    response = flow.authorize()
    response = flow.approve(response)
    assert "#" not in response["Location"]
    assert location_query(response)["code"]


def test_prompt_none_with_id_token_hint_of_another_resident_is_not_silent(flow, tokens, make_resident):
    """§3.1.2.1 id_token_hint: the OP returns a positive response only for the hinted End-User."""
    other = make_resident()
    other_browser = BrowserClient()
    sign_in(other_browser, other.email)
    other_flow = OIDCFlow(other_browser, flow.rp)
    other_tokens = complete_flow(other_flow)
    response = flow.authorize(prompt="none", id_token_hint=other_tokens["id_token"])
    query = location_query(response)
    assert "code" not in query
    assert query["error"][0] in ("login_required", "interaction_required", "invalid_request")


def test_prompt_none_with_a_forged_id_token_hint_is_not_silent(flow, tokens):
    header, payload, signature = tokens["id_token"].split(".")
    forged = f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    response = flow.authorize(prompt="none", id_token_hint=forged)
    query = location_query(response)
    assert "code" not in query
    assert query["error"][0] in ("login_required", "interaction_required", "invalid_request")
