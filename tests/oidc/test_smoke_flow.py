"""End-to-end authorization-code + PKCE flow with the real login page."""

from __future__ import annotations

import json

from tests.conftest import verify_id_token
from tests.oidc.conftest import expected_sub


def test_code_flow_issues_verified_id_token_and_userinfo(flow, resident):
    code = flow.get_code()
    response = flow.token(code)
    assert response.status_code == 200, response.content
    body = response.json()
    claims = verify_id_token(body["id_token"], flow.rp.client_id)
    assert claims["sub"] == expected_sub(flow.rp, resident)
    assert claims["nonce"] == flow.nonce
    assert "auth_time" in claims
    info = flow.browser.get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert info.status_code == 200
    assert json.loads(info.content)["email"] == resident.email
