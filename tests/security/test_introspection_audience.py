"""Issue 9, finding 5: introspection describes a token only to those it is meant for.

RFC 7662 §4: an access token is described only to the client it was issued to, or to a
resource server named in its `aud` (RFC 9068 §3); a refresh token only to its own client.
Anyone else gets `{"active": false}`, exactly what an unknown token gets.

The audience comes from RFC 8707 resource indicators: a resource server is registered with
its resource identifier; a client asks `resource=<identifier>` at the authorization request
(or PAR) and/or the token request; an unknown or malformed identifier is `invalid_target`;
a later token or refresh request may narrow the resources granted, never widen them. Without
`resource`, tokens are for us (`aud` = our issuer: userinfo), and userinfo refuses a token
whose `aud` does not name us (RFC 9068 §4). Revocation stays with the token's own client
(RFC 7009 §2.1), even for a resource server named in `aud`.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from django.utils import timezone
from oauth2_provider.models import set_token_value

from identity.oidc.models import AccessToken
from tests.conftest import REDIRECT_URI, OIDCFlow
from tests.oidc.conftest import complete_flow, post_token, userinfo

API_A = "https://api.mediatheques.example.org"
API_B = "https://api.transports.example.org/v1"
API_C = "https://api.billetterie.example.org"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def introspect(token: str, caller: Any, hint: str | None = None) -> Any:
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    return BrowserClient(enforce_csrf_checks=True).post(
        "/introspect", data, HTTP_AUTHORIZATION=caller.basic_auth()
    )


def described(token: str, caller: Any, hint: str | None = None) -> dict[str, Any]:
    response = introspect(token, caller, hint)
    assert response.status_code == 200, response.content
    return response.json()


def refresh(rp: Any, refresh_token: str, **extra: Any) -> Any:
    return post_token(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}, auth=rp.basic_auth()
    )


def resource_server(make_client: Any, name: str, identifier: str | None) -> Any:
    extra = {"resource_identifier": identifier} if identifier else {}
    return make_client(
        name=name, redirect_uris=[], grant_types=["client_credentials"], is_resource_server=True, **extra
    )


@pytest.fixture
def tokens(flow):
    return complete_flow(flow)


@pytest.fixture
def other_rp(make_client):
    return make_client(name="Médiathèques")


@pytest.fixture
def rs_a(make_client):
    return resource_server(make_client, "API médiathèques", API_A)


@pytest.fixture
def rs_b(make_client):
    return resource_server(make_client, "API transports", API_B)


@pytest.fixture
def rs_c(make_client):
    return resource_server(make_client, "API billetterie", API_C)


@pytest.fixture
def curious_rs(make_client):
    """A resource server the tokens were not meant for (no identifier at all)."""
    return resource_server(make_client, "API curieuse", None)


@pytest.fixture
def machine(make_client):
    return make_client(
        name="Passerelle", redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"]
    )


def tokens_for(flow: OIDCFlow, authorize: dict[str, Any] | None = None, **token_extra: Any) -> dict[str, Any]:
    code = flow.get_code(**(authorize or {}))
    response = flow.token(code, **token_extra)
    assert response.status_code == 200, response.content
    return response.json()


# --- the attack: a resource server reads tokens that are not meant for it ----------------------


def test_a_resource_server_cannot_introspect_a_token_not_meant_for_it(flow, tokens, curious_rs):
    unknown = introspect("no-such-token", curious_rs)
    for token, hint in ((tokens["access_token"], None), (tokens["access_token"], "access_token")):
        response = introspect(token, curious_rs, hint)
        assert response.status_code == unknown.status_code == 200
        assert response.json() == unknown.json() == {"active": False}
        assert response["Cache-Control"] == unknown["Cache-Control"]
    # The token is live: it is meant for userinfo.
    assert userinfo(tokens["access_token"]).status_code == 200


def test_a_resource_server_cannot_introspect_another_clients_refresh_token(flow, tokens, curious_rs):
    for hint in (None, "refresh_token", "access_token"):
        assert described(tokens["refresh_token"], curious_rs, hint) == {"active": False}


def test_a_resource_server_cannot_introspect_another_clients_machine_token(machine, curious_rs):
    token = post_token({"grant_type": "client_credentials"}, auth=machine.basic_auth()).json()["access_token"]
    assert described(token, curious_rs) == {"active": False}


def test_the_client_itself_can_introspect_its_tokens(make_client, signed_in, resident):
    # A partner that is both a relying party and a resource server (its own API).
    own = make_client(name="Billetterie et API", is_resource_server=True)
    tokens = tokens_for(OIDCFlow(signed_in, own))
    access = described(tokens["access_token"], own)
    assert access["active"] is True and access["client_id"] == own.client_id
    refresh_description = described(tokens["refresh_token"], own, "refresh_token")
    assert refresh_description["active"] is True and refresh_description["client_id"] == own.client_id


def test_a_machine_resource_server_can_introspect_its_own_token(rs_a):
    token = post_token({"grant_type": "client_credentials"}, auth=rs_a.basic_auth()).json()["access_token"]
    assert described(token, rs_a)["active"] is True


def test_the_resource_server_named_in_aud_can_introspect_the_access_token_only(flow, rs_a, rs_b, curious_rs):
    tokens = tokens_for(flow, {"resource": API_A})
    assert claims_of(tokens["access_token"])["aud"] == API_A
    body = described(tokens["access_token"], rs_a)
    assert body["active"] is True
    assert body["aud"] == API_A and body["client_id"] == flow.rp.client_id
    assert described(tokens["access_token"], rs_b) == {"active": False}
    assert described(tokens["access_token"], curious_rs) == {"active": False}
    # A refresh token is described to its own client only, never to a resource server.
    assert described(tokens["refresh_token"], rs_a, "refresh_token") == {"active": False}


def test_a_machine_token_asked_for_a_resource_is_described_to_that_resource_server(machine, rs_a, rs_b):
    response = post_token({"grant_type": "client_credentials", "resource": API_A}, auth=machine.basic_auth())
    assert response.status_code == 200, response.content
    token = response.json()["access_token"]
    assert claims_of(token)["aud"] == API_A
    assert described(token, rs_a)["active"] is True
    assert described(token, rs_b) == {"active": False}


# --- RFC 8707 resource indicators: where they may be asked, and invalid_target ---------------


def test_without_resource_the_token_is_for_us(flow, tokens):
    assert claims_of(tokens["access_token"])["aud"] == settings.ISSUER


def test_resource_asked_at_the_token_request(flow, rs_a):
    tokens = tokens_for(flow, resource=API_A)
    assert claims_of(tokens["access_token"])["aud"] == API_A
    assert described(tokens["access_token"], rs_a)["active"] is True


def test_resource_asked_through_par_survives_the_consent_page(flow, rs_a):
    pushed = BrowserClient().post(
        "/par", flow.authorize_params(resource=API_A), HTTP_AUTHORIZATION=flow.rp.basic_auth()
    )
    assert pushed.status_code == 201, pushed.content
    page = flow.browser.get(
        "/authorize", {"client_id": flow.rp.client_id, "request_uri": pushed.json()["request_uri"]}
    )
    assert page.status_code == 200 and "pending_id" in page.context  # the consent page
    code = flow.code_from(flow.approve(page))
    tokens = flow.token(code).json()
    assert claims_of(tokens["access_token"])["aud"] == API_A


def test_several_resources_then_one_per_token(flow, rs_a, rs_b):
    tokens = tokens_for(flow, {"resource": [API_A, API_B]}, resource=API_B)
    assert claims_of(tokens["access_token"])["aud"] == API_B
    assert described(tokens["access_token"], rs_a) == {"active": False}
    assert described(tokens["access_token"], rs_b)["active"] is True


def test_a_token_for_us_and_an_api(flow, rs_a):
    tokens = tokens_for(flow, {"resource": [settings.ISSUER, API_A]})
    assert claims_of(tokens["access_token"])["aud"] == [settings.ISSUER, API_A]
    assert userinfo(tokens["access_token"]).status_code == 200
    assert described(tokens["access_token"], rs_a)["active"] is True


@pytest.mark.parametrize(
    "resource",
    [
        "https://unknown.example.org",  # registered nowhere
        API_A + "/",  # compared exactly: not the registered identifier
        "api.mediatheques.example.org",  # not an absolute URI
        API_A + "#fragment",
        "",
    ],
)
def test_unknown_or_malformed_resource_at_the_authorization_endpoint(flow, rs_a, resource):
    response = flow.authorize(resource=resource)
    assert response.status_code in (302, 303)
    assert response["Location"].startswith(REDIRECT_URI)
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["error"] == ["invalid_target"]
    assert query["state"] == [flow.state]
    assert query["iss"] == [settings.ISSUER]
    assert "code" not in query


def test_unknown_resource_at_par(flow, rs_a):
    pushed = BrowserClient().post(
        "/par",
        flow.authorize_params(resource="https://unknown.example.org"),
        HTTP_AUTHORIZATION=flow.rp.basic_auth(),
    )
    assert pushed.status_code == 400
    assert pushed.json()["error"] == "invalid_target"


@pytest.mark.parametrize("resource", ["https://unknown.example.org", "not-a-uri", API_A + "#x"])
def test_unknown_or_malformed_resource_at_the_token_endpoint(flow, machine, rs_a, resource):
    code = flow.get_code()
    response = flow.token(code, resource=resource)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    response = post_token(
        {"grant_type": "client_credentials", "resource": resource}, auth=machine.basic_auth()
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_a_client_is_not_a_resource_by_being_registered(flow, machine, other_rp):
    """Only identifiers registered for resource servers are targets, not client ids or redirect URIs."""
    for resource in (other_rp.client_id, REDIRECT_URI):
        response = post_token(
            {"grant_type": "client_credentials", "resource": resource}, auth=machine.basic_auth()
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_target"


def test_token_request_cannot_leave_the_resources_of_the_authorization_request(flow, rs_a, rs_b):
    code = flow.get_code(resource=API_A)
    response = flow.token(code, resource=API_B)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_refresh_may_narrow_to_a_granted_resource_never_widen(flow, rs_a, rs_b, rs_c):
    tokens = tokens_for(flow, {"resource": [API_A, API_B]}, resource=API_A)
    assert claims_of(tokens["access_token"])["aud"] == API_A
    # Narrowing to another resource of the original grant is allowed.
    narrowed = refresh(flow.rp, tokens["refresh_token"], resource=API_B)
    assert narrowed.status_code == 200, narrowed.content
    assert claims_of(narrowed.json()["access_token"])["aud"] == API_B
    # Widening to a registered resource outside the grant is not, nor to us.
    for resource in (API_C, settings.ISSUER):
        widened = refresh(flow.rp, narrowed.json()["refresh_token"], resource=resource)
        assert widened.status_code == 400, widened.content
        assert widened.json()["error"] == "invalid_target"
    # The refresh token survives a refused request; without resource: the whole grant.
    whole = refresh(flow.rp, narrowed.json()["refresh_token"])
    assert whole.status_code == 200, whole.content
    assert claims_of(whole.json()["access_token"])["aud"] == [API_A, API_B]


def test_refresh_of_a_token_for_us_cannot_widen_to_an_api(flow, tokens, rs_a):
    response = refresh(flow.rp, tokens["refresh_token"], resource=API_A)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    again = refresh(flow.rp, tokens["refresh_token"], resource=settings.ISSUER)
    assert again.status_code == 200, again.content
    assert claims_of(again.json()["access_token"])["aud"] == settings.ISSUER


# --- userinfo is a resource of ours: it accepts only tokens meant for us ----------------------


def test_a_token_for_another_resource_server_is_refused_at_userinfo(flow, rs_a):
    tokens = tokens_for(flow, {"resource": API_A})
    response = userinfo(tokens["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


# --- revocation: only the client the token was issued to (RFC 7009 §2.1) ----------------------


def revoke(caller: Any, token: str, hint: str | None = None) -> Any:
    data = {"token": token, **({"token_type_hint": hint} if hint else {})}
    return BrowserClient().post("/revoke", data, HTTP_AUTHORIZATION=caller.basic_auth())


def test_a_resource_server_named_in_aud_cannot_revoke_the_token(flow, rs_a):
    tokens = tokens_for(flow, {"resource": [settings.ISSUER, API_A]})
    for token, hint in ((tokens["access_token"], "access_token"), (tokens["refresh_token"], "refresh_token")):
        assert revoke(rs_a, token, hint).status_code == 200  # RFC 7009 §2.2: nothing to tell
    assert userinfo(tokens["access_token"]).status_code == 200
    assert described(tokens["access_token"], rs_a)["active"] is True
    assert refresh(flow.rp, tokens["refresh_token"]).status_code == 200


def test_another_client_cannot_revoke_a_machine_token(machine, rs_a):
    token = post_token(
        {"grant_type": "client_credentials", "resource": API_A}, auth=machine.basic_auth()
    ).json()["access_token"]
    assert revoke(rs_a, token).status_code == 200
    assert described(token, rs_a)["active"] is True
    assert revoke(machine, token).status_code == 200
    assert described(token, rs_a) == {"active": False}


def test_resource_kept_when_no_consent_page_is_shown(flow, rs_a):
    tokens_for(flow)  # the resident agreed once: the next authorization shows no page
    response = flow.authorize(resource=API_A)
    assert response.status_code in (302, 303), "expected a code without a consent page"
    tokens = flow.token(flow.code_from(response)).json()
    assert claims_of(tokens["access_token"])["aud"] == API_A


def test_the_same_rule_for_an_opaque_access_token_row(flow, resident, rs_a, curious_rs):
    """Access tokens are JWTs; a stored row whose token is not one (e.g. issued before they
    were) is looked up by its SHA-256 and follows the same rule, with the row's resources."""
    row = AccessToken(
        user=resident,
        application=flow.rp.client,
        scope="openid",
        expires=timezone.now() + timedelta(minutes=5),
        resource=[API_A],
    )
    set_token_value(row, "opaque-legacy-token")
    row.save()
    assert described("opaque-legacy-token", rs_a)["active"] is True
    assert described("opaque-legacy-token", curious_rs) == {"active": False}
    row.resource = []
    row.save(update_fields=["resource"])
    assert described("opaque-legacy-token", rs_a) == {"active": False}


def test_too_many_resources_are_refused(machine, make_client):
    apis = [f"https://api{n}.example.org" for n in range(11)]
    for api in apis:
        resource_server(make_client, api, api)
    ten = post_token({"grant_type": "client_credentials", "resource": apis[:10]}, auth=machine.basic_auth())
    assert ten.status_code == 200, ten.content
    response = post_token({"grant_type": "client_credentials", "resource": apis}, auth=machine.basic_auth())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
