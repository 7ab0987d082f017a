"""RFC 7009 (OAuth 2.0 token revocation)."""

from __future__ import annotations

from typing import Any

from django.test import Client as BrowserClient

from tests.oidc.conftest import basic, post_token, userinfo


def revoke(rp: Any, token: str, hint: str | None = None, *, auth: str | None = None) -> Any:
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    return BrowserClient(enforce_csrf_checks=True).post(
        "/revoke", data, HTTP_AUTHORIZATION=auth or rp.basic_auth()
    )


def refresh(rp: Any, refresh_token: str) -> Any:
    return post_token({"grant_type": "refresh_token", "refresh_token": refresh_token}, auth=rp.basic_auth())


def test_revoking_an_access_token_makes_userinfo_fail(flow, tokens):
    assert userinfo(tokens["access_token"]).status_code == 200
    response = revoke(flow.rp, tokens["access_token"], "access_token")
    assert response.status_code == 200
    assert userinfo(tokens["access_token"]).status_code == 401


def test_revoking_an_access_token_without_hint(flow, tokens):
    assert revoke(flow.rp, tokens["access_token"]).status_code == 200
    assert userinfo(tokens["access_token"]).status_code == 401


def test_revoking_a_refresh_token_makes_refresh_fail(flow, tokens):
    response = revoke(flow.rp, tokens["refresh_token"], "refresh_token")
    assert response.status_code == 200
    refreshed = refresh(flow.rp, tokens["refresh_token"])
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


def test_revoking_a_refresh_token_with_a_wrong_hint_still_revokes_it(flow, tokens):
    """§2.1: a wrong hint makes the server extend its search to other token types."""
    assert revoke(flow.rp, tokens["refresh_token"], "access_token").status_code == 200
    assert refresh(flow.rp, tokens["refresh_token"]).status_code == 400


def test_revoking_a_refresh_token_also_invalidates_its_access_token(flow, tokens):
    """§2.1: SHOULD also invalidate the access tokens based on the same grant."""
    revoke(flow.rp, tokens["refresh_token"], "refresh_token")
    assert userinfo(tokens["access_token"]).status_code == 401


def test_unknown_token_answers_200(rp):
    response = revoke(rp, "no-such-token", "access_token")
    assert response.status_code == 200
    response = revoke(rp, "no-such-token")
    assert response.status_code == 200


def test_unsupported_token_type_hint_is_ignored_or_refused(flow, tokens):
    response = revoke(flow.rp, tokens["access_token"], "id_token")
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert response.json()["error"] == "unsupported_token_type"


def test_revocation_by_another_client_does_not_revoke(flow, tokens, other_rp):
    for token, hint in ((tokens["access_token"], "access_token"), (tokens["refresh_token"], "refresh_token")):
        response = revoke(other_rp, token, hint)
        assert response.status_code in (200, 400)
    assert userinfo(tokens["access_token"]).status_code == 200
    assert refresh(flow.rp, tokens["refresh_token"]).status_code == 200


def test_revocation_requires_client_authentication(flow, tokens):
    response = revoke(flow.rp, tokens["access_token"], auth=basic(flow.rp.client_id, "wrong"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    response = BrowserClient().post("/revoke", {"token": tokens["access_token"]})
    assert response.status_code in (400, 401)
    assert userinfo(tokens["access_token"]).status_code == 200


def test_revocation_without_token_is_invalid_request(rp):
    response = BrowserClient().post("/revoke", {}, HTTP_AUTHORIZATION=rp.basic_auth())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_revocation_refuses_get(rp, tokens):
    response = BrowserClient().get(
        "/revoke", {"token": tokens["access_token"]}, HTTP_AUTHORIZATION=rp.basic_auth()
    )
    assert response.status_code == 405
    assert userinfo(tokens["access_token"]).status_code == 200
