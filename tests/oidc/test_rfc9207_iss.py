"""RFC 9207 (authorization server issuer identification): `iss` in every authorization
response, success and error alike, equal to the metadata `issuer`."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client as BrowserClient

from tests.conftest import OIDCFlow
from tests.oidc.conftest import location_query


def test_iss_on_success_response(flow):
    response = flow.approve(flow.authorize())
    query = location_query(response)
    assert query["code"]
    assert query["iss"] == [settings.ISSUER]


def test_iss_on_silent_success_response(flow):
    flow.token(flow.get_code())
    query = location_query(flow.authorize(prompt="none"))
    assert query["code"]
    assert query["iss"] == [settings.ISSUER]


def test_iss_equals_the_metadata_issuer(flow):
    issuer = BrowserClient().get("/.well-known/openid-configuration").json()["issuer"]
    query = location_query(flow.approve(flow.authorize()))
    assert query["iss"] == [issuer]


def test_iss_appears_once(flow):
    response = flow.approve(flow.authorize())
    assert response["Location"].count("iss=") == 1


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid unknown"}, "invalid_scope"),
        ({"prompt": "none"}, "consent_required"),
        ({"request": "x.y.z"}, "request_not_supported"),
    ],
)
def test_iss_on_error_responses(flow, overrides, error):
    query = location_query(flow.authorize(**overrides))
    assert query["error"] == [error]
    assert query["iss"] == [settings.ISSUER]


def test_iss_on_login_required(rp):
    flow = OIDCFlow(BrowserClient(), rp)
    query = location_query(flow.authorize(prompt="none"))
    assert query["error"] == ["login_required"]
    assert query["iss"] == [settings.ISSUER]


def test_iss_on_access_denied(flow):
    page = flow.authorize()
    response = flow.browser.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    query = location_query(response)
    assert query["error"] == ["access_denied"]
    assert query["iss"] == [settings.ISSUER]
