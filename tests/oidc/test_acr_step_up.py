"""Authentication levels and step-up (issue 5; OIDC Core §3.1.2.1 acr_values, §5.5.1.1 essential
acr; OpenID Connect Unmet Authentication Requirements 1.0; RFC 8176 amr).

- A client may require MFA by registration, or ask for it: by `acr_values` (voluntary) or by an
  essential `acr` in the `claims` parameter. A signed-in resident below the level is asked for
  the second factor only (step-up) and comes back to the same authorization request.
- A required level that cannot be reached is an error for the client, never a code:
  `unmet_authentication_requirements` (no second factor), `interaction_required` (prompt=none).
- A voluntary level that cannot be reached is not an error: the ID token states the level
  reached.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from identity.mfa import services
from identity.sessions import acr_for
from tests.conftest import REDIRECT_URI, OIDCFlow, verify_id_token
from tests.mfa.conftest import clock, rfc6238  # noqa: F401  (fixture re-exported)
from tests.oidc.conftest import location_base, location_query

pytestmark = pytest.mark.django_db

MFA = "https://refeds.org/profile/mfa"


def enrol_totp(user: Any, clock: Any) -> bytes:  # noqa: F811
    """A confirmed TOTP app for `user`, added without touching the current session's level."""
    device, key = services.totp_enrolment_start(user=user)
    outcome = services.totp_enrolment_confirm(
        user=user, device_id=device.pk, code=rfc6238(key, clock() - 30), name="Téléphone"
    )
    assert outcome.ok
    return key


def assert_error(response: Any, error: str, flow: OIDCFlow) -> None:
    assert response.status_code in (302, 303), response.status_code
    assert location_base(response) == REDIRECT_URI
    query = location_query(response)
    assert query["error"] == [error], query
    assert query["state"] == [flow.state]
    assert "code" not in query


def step_up_target(response: Any) -> str:
    assert response.status_code in (302, 303), response.status_code
    parts = urlsplit(response["Location"])
    assert parts.path == "/connexion/verification/", response["Location"]
    return parse_qs(parts.query)["next"][0]


def id_token_claims(flow: OIDCFlow, response: Any) -> dict[str, Any]:
    if response.status_code == 200 and "pending_id" in (response.context or {}):
        response = flow.approve(response)
    token = flow.token(flow.code_from(response))
    assert token.status_code == 200, token.content
    return verify_id_token(token.json()["id_token"], flow.rp.client_id)


def test_password_session_asking_mfa_steps_up_then_gets_acr_mfa(flow, resident, clock):  # noqa: F811
    key = enrol_totp(resident, clock)
    response = flow.authorize(acr_values=MFA)
    next_url = step_up_target(response)
    assert urlsplit(next_url).path == "/authorize"

    # Only the second factor is asked (no password field), then back to the same request.
    page = flow.browser.get(response["Location"])
    assert page.status_code == 200 and 'name="password"' not in page.content.decode()
    clock.advance(30)
    back = flow.browser.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(key, clock()), "next": next_url}
    )
    assert back.status_code == 302 and back["Location"] == next_url
    claims = id_token_claims(flow, flow.browser.get(next_url))
    assert claims["acr"] == MFA
    assert "mfa" in claims["amr"] and "otp" in claims["amr"]


def test_client_requiring_mfa_with_a_resident_without_factor_gets_unmet_requirements(make_client, signed_in):
    flow = OIDCFlow(signed_in, make_client(require_mfa=True))
    assert_error(flow.authorize(), "unmet_authentication_requirements", flow)


def test_client_requiring_mfa_steps_up_a_resident_with_a_factor(make_client, signed_in, resident, clock):  # noqa: F811
    enrol_totp(resident, clock)
    flow = OIDCFlow(signed_in, make_client(require_mfa=True))
    step_up_target(flow.authorize())


def test_prompt_none_below_a_required_level_is_interaction_required(make_client, signed_in, resident, clock):  # noqa: F811
    enrol_totp(resident, clock)
    flow = OIDCFlow(signed_in, make_client(require_mfa=True))
    assert_error(flow.authorize(prompt="none"), "interaction_required", flow)


def test_prompt_none_signed_out_with_mfa_required_is_login_required(make_client, client):
    flow = OIDCFlow(client, make_client(require_mfa=True))
    assert_error(flow.authorize(prompt="none"), "login_required", flow)


def test_essential_acr_in_claims_parameter_is_required(flow):
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": [MFA]}}})
    assert_error(flow.authorize(claims=claims), "unmet_authentication_requirements", flow)


def test_essential_acr_we_do_not_offer_is_unmet(flow):
    claims = json.dumps({"id_token": {"acr": {"essential": True, "value": "eidas3"}}})
    assert_error(flow.authorize(claims=claims), "unmet_authentication_requirements", flow)


def test_essential_basic_acr_is_met_by_a_password(flow):
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": ["eidas1", MFA]}}})
    assert id_token_claims(flow, flow.authorize(claims=claims))["acr"] == "eidas1"


def test_voluntary_mfa_that_cannot_be_met_issues_at_the_level_reached(flow):
    """OIDC Core §5.5.1.1: acr_values is a voluntary request; the ID token says what was reached."""
    claims = id_token_claims(flow, flow.authorize(acr_values=MFA))
    assert claims["acr"] == "eidas1"
    assert claims["amr"] == ["pwd"]


def test_mfa_session_is_not_asked_again(make_client, signed_in, resident, clock):  # noqa: F811
    key = enrol_totp(resident, clock)
    flow = OIDCFlow(signed_in, make_client(require_mfa=True))
    next_url = step_up_target(flow.authorize())
    clock.advance(30)
    signed_in.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(key, clock()), "next": next_url}
    )
    assert id_token_claims(flow, flow.authorize())["acr"] == MFA
    # Later requests in the same session pass silently too.
    assert id_token_claims(flow, flow.authorize(prompt="none"))["acr"] == MFA


def test_discovery_lists_the_levels(client):
    assert client.get("/.well-known/openid-configuration").json()["acr_values_supported"] == ["eidas1", MFA]


@pytest.mark.parametrize(
    ("amr", "acr"),
    [
        (["pwd"], "eidas1"),
        (["pwd", "otp", "mfa"], MFA),
        (["hwk", "mfa"], MFA),
        (["hwk"], "eidas1"),  # passkey with user presence only: one factor
        (["swk"], "eidas1"),
    ],
)
def test_session_level_follows_the_mfa_contract(amr, acr):
    assert acr_for(amr) == acr
