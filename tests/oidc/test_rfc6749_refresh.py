"""RFC 6749 §6 (refreshing an access token), RFC 9700 §4.14 (refresh token protection:
rotation, and revocation of the whole family when a rotated token is reused),
OIDC Core §12.2 (ID token from a refresh)."""

from __future__ import annotations

from typing import Any

from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import basic, complete_flow, expected_sub, post_token, userinfo


def refresh(rp: Any, refresh_token: str, **extra: str) -> Any:
    return post_token(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}, auth=rp.basic_auth()
    )


def test_refresh_issues_new_tokens(flow, tokens):
    response = refresh(flow.rp, tokens["refresh_token"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["access_token"] != tokens["access_token"]
    assert "no-store" in response["Cache-Control"]
    assert userinfo(body["access_token"]).status_code == 200


def test_refresh_rotates_the_refresh_token(flow, tokens):
    body = refresh(flow.rp, tokens["refresh_token"]).json()
    assert body["refresh_token"] and body["refresh_token"] != tokens["refresh_token"]
    # The new one works...
    assert refresh(flow.rp, body["refresh_token"]).status_code == 200


def test_rotated_refresh_token_is_refused(flow, tokens):
    refresh(flow.rp, tokens["refresh_token"])
    response = refresh(flow.rp, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_reuse_of_rotated_refresh_token_revokes_the_family(flow, tokens):
    second = refresh(flow.rp, tokens["refresh_token"]).json()
    third = refresh(flow.rp, second["refresh_token"]).json()
    assert userinfo(third["access_token"]).status_code == 200
    # An attacker (or a confused client) replays the first refresh token.
    replay = refresh(flow.rp, tokens["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # The newest refresh token and access token of that family stop working.
    newest = refresh(flow.rp, third["refresh_token"])
    assert newest.status_code == 400
    assert newest.json()["error"] == "invalid_grant"
    assert userinfo(third["access_token"]).status_code == 401


def test_family_revocation_does_not_touch_another_session(flow, tokens):
    other_session = complete_flow(flow)
    second = refresh(flow.rp, tokens["refresh_token"]).json()
    assert refresh(flow.rp, tokens["refresh_token"]).status_code == 400
    assert refresh(flow.rp, second["refresh_token"]).status_code == 400
    assert userinfo(other_session["access_token"]).status_code == 200
    assert refresh(flow.rp, other_session["refresh_token"]).status_code == 200


def test_another_client_cannot_use_the_refresh_token(flow, tokens, other_rp):
    response = refresh(other_rp, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # ...and the rightful client still can.
    assert refresh(flow.rp, tokens["refresh_token"]).status_code == 200


def test_refresh_requires_client_authentication(flow, tokens):
    response = post_token(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": flow.rp.client_id,
        }
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"
    response = post_token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=basic(flow.rp.client_id, "wrong"),
    )
    assert response.status_code == 401


def test_refresh_cannot_widen_the_scope(make_client, signed_in):
    rp = make_client()
    flow = OIDCFlow(signed_in, rp)
    tokens = complete_flow(flow, scope="openid profile")
    response = refresh(rp, tokens["refresh_token"], scope="openid profile email")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_refresh_can_narrow_the_scope(flow, tokens):
    response = refresh(flow.rp, tokens["refresh_token"], scope="openid profile")
    assert response.status_code == 200, response.content
    assert set(response.json()["scope"].split()) == {"openid", "profile"}


def test_unknown_refresh_token_is_invalid_grant(rp):
    response = refresh(rp, "not-a-refresh-token")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_refreshed_id_token_keeps_sub_and_auth_time(flow, tokens, resident):
    original = verify_id_token(tokens["id_token"], flow.rp.client_id)
    body = refresh(flow.rp, tokens["refresh_token"]).json()
    assert "id_token" in body
    refreshed = verify_id_token(body["id_token"], flow.rp.client_id)
    assert refreshed["iss"] == original["iss"]
    assert refreshed["sub"] == original["sub"] == expected_sub(flow.rp, resident)
    assert refreshed["aud"] == original["aud"]
    assert refreshed["auth_time"] == original["auth_time"]
    assert refreshed["iat"] >= original["iat"]


def test_refresh_token_of_an_inactive_resident_is_refused(flow, tokens, resident):
    resident.is_active = False
    resident.save(update_fields=["is_active"])
    response = refresh(flow.rp, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
