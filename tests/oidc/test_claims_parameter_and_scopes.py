"""The `claims` request parameter (OIDC Core §5.5) and the `address` / `phone` scopes (§5.4).

- `claims` is a JSON object with `id_token` and `userinfo` members; claims may be essential
  or voluntary. Malformed JSON is an `invalid_request` sent back to the client.
- We release an individual claim only when a scope the resident granted covers it: the
  parameter never widens what the scopes (and the consent ledger) allow.
- `address` releases the structured `address` claim (§5.1.1), `phone` releases
  `phone_number` and `phone_number_verified`; a claim the resident left empty is omitted.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import complete_flow, location_query, post_token, userinfo

pytestmark = pytest.mark.django_db


def test_discovery_says_claims_parameter_is_supported(client):
    metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["claims_parameter_supported"] is True
    assert {"address", "phone"} <= set(metadata["scopes_supported"])
    assert {"address", "phone_number", "phone_number_verified"} <= set(metadata["claims_supported"])


@pytest.mark.parametrize(
    "value", ["{not json", "[1, 2]", '{"id_token": "email"}', '{"userinfo": {"email": 3}}']
)
def test_malformed_claims_is_invalid_request_redirect(flow, value):
    response = flow.authorize(claims=value)
    assert response.status_code in (302, 303)
    query = location_query(response)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == [flow.state]


def test_essential_claim_outside_the_granted_scopes_is_not_released(flow, resident):
    claims = json.dumps(
        {"userinfo": {"email": {"essential": True}}, "id_token": {"email": {"essential": True}}}
    )
    body = complete_flow(flow, scope="openid profile", claims=claims)
    info = userinfo(body["access_token"]).json()
    assert "email" not in info and info["given_name"] == resident.given_name
    assert "email" not in verify_id_token(body["id_token"], flow.rp.client_id)


def test_requested_claims_covered_by_a_scope_are_released_in_both_members(flow, resident):
    claims = json.dumps(
        {"userinfo": {"email": None}, "id_token": {"email": {"essential": True}, "auth_time": None}}
    )
    body = complete_flow(flow, claims=claims)
    id_claims = verify_id_token(body["id_token"], flow.rp.client_id)
    assert id_claims["email"] == resident.email and "auth_time" in id_claims
    assert userinfo(body["access_token"]).json()["email"] == resident.email


def test_claims_request_survives_a_refresh(flow, resident):
    body = complete_flow(flow, claims=json.dumps({"userinfo": {"email": None}}))
    refreshed = post_token(
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, auth=flow.rp.basic_auth()
    ).json()
    assert userinfo(refreshed["access_token"]).json()["email"] == resident.email


@pytest.fixture
def contact_rp(make_client):
    return make_client(scopes=["openid", "profile", "email", "address", "phone"])


def test_address_and_phone_scopes_release_their_claims(contact_rp, signed_in, resident):
    resident.phone_number = "+33 2 40 41 90 00"
    resident.phone_number_verified = True
    resident.street_address = "2 cours du Champ de Mars"
    resident.postal_code = "44000"
    resident.locality = "Nantes"
    resident.country = "France"
    resident.save()
    flow = OIDCFlow(signed_in, contact_rp)
    body = complete_flow(flow, scope="openid address phone")
    info = userinfo(body["access_token"]).json()
    assert info["phone_number"] == "+33 2 40 41 90 00"
    assert info["phone_number_verified"] is True
    address = info["address"]
    assert address["street_address"] == "2 cours du Champ de Mars"
    assert address["postal_code"] == "44000" and address["locality"] == "Nantes"
    assert address["country"] == "France" and "region" not in address
    assert address["formatted"] == "2 cours du Champ de Mars\n44000 Nantes\nFrance"
    assert "email" not in info and "given_name" not in info


def test_empty_address_and_phone_are_omitted(contact_rp, signed_in):
    flow = OIDCFlow(signed_in, contact_rp)
    body = complete_flow(flow, scope="openid address phone")
    info = userinfo(body["access_token"]).json()
    assert set(info) == {"sub"}


def test_address_scope_needs_registration(flow):
    response = flow.authorize(scope="openid address")
    assert location_query(response)["error"] == ["invalid_scope"]
