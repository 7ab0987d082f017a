"""RFC 7636 (PKCE), enforced with S256 only as RFC 9700 §2.1.1 recommends."""

from __future__ import annotations

import base64
import hashlib

import pytest
from django.test import Client as BrowserClient

from tests.conftest import REDIRECT_URI, OIDCFlow, pkce_pair
from tests.oidc.conftest import location_base, location_query


def assert_invalid_request_redirect(response, flow: OIDCFlow):
    assert response.status_code in (302, 303), response.status_code
    assert location_base(response) == REDIRECT_URI
    query = location_query(response)
    assert query["error"] == ["invalid_request"], query
    assert query["state"] == [flow.state]
    assert "code" not in query


def test_missing_code_challenge_is_invalid_request(flow: OIDCFlow):
    response = flow.authorize(code_challenge=None, code_challenge_method=None)
    assert_invalid_request_redirect(response, flow)


def test_missing_code_challenge_with_method_is_invalid_request(flow: OIDCFlow):
    response = flow.authorize(code_challenge=None)
    assert_invalid_request_redirect(response, flow)


def test_plain_method_is_refused(flow: OIDCFlow):
    verifier, _challenge = pkce_pair()
    response = flow.authorize(code_challenge=verifier, code_challenge_method="plain")
    assert_invalid_request_redirect(response, flow)


def test_missing_method_is_refused(flow: OIDCFlow):
    """RFC 7636 §4.3: the method defaults to plain, which we do not accept."""
    response = flow.authorize(code_challenge_method=None)
    assert_invalid_request_redirect(response, flow)


@pytest.mark.parametrize("method", ["s256", "S512", "sha256", ""])
def test_unknown_method_is_refused(flow: OIDCFlow, method: str):
    response = flow.authorize(code_challenge_method=method)
    assert_invalid_request_redirect(response, flow)


def test_correct_s256_verifier_succeeds(flow: OIDCFlow):
    code = flow.get_code()
    response = flow.token(code)
    assert response.status_code == 200, response.content


def test_challenge_is_computed_as_in_rfc7636_appendix_b(make_client, signed_in):
    """RFC 7636 Appendix B test vector."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        == challenge
    )
    flow = OIDCFlow(signed_in, make_client())
    flow.verifier, flow.challenge = verifier, challenge
    response = flow.token(flow.get_code())
    assert response.status_code == 200, response.content


def test_wrong_verifier_is_invalid_grant(flow: OIDCFlow):
    code = flow.get_code()
    other_verifier, _ = pkce_pair()
    response = flow.token(code, code_verifier=other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_challenge_sent_as_verifier_is_invalid_grant(flow: OIDCFlow):
    code = flow.get_code()
    response = flow.token(code, code_verifier=flow.challenge)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_missing_verifier_is_refused(flow: OIDCFlow):
    code = flow.get_code()
    response = flow.token(code, code_verifier=None)
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_grant", "invalid_request")


def test_discovery_advertises_only_s256():
    metadata = BrowserClient().get("/.well-known/openid-configuration").json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    as_metadata = BrowserClient().get("/.well-known/oauth-authorization-server").json()
    assert as_metadata["code_challenge_methods_supported"] == ["S256"]
