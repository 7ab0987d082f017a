"""RFC 7662 (OAuth 2.0 token introspection), open to registered resource servers only.

§4: a token is described only to those it is meant for (tests/security/
test_introspection_audience.py): here the resident's tokens are asked (RFC 8707) for
userinfo and for the resource server that introspects them.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.http import JsonResponse
from django.test import Client as BrowserClient
from django.utils import timezone

from identity.oidc.models import AccessToken
from tests.conftest import OIDCFlow
from tests.oidc.conftest import basic, complete_flow, expected_sub, post_token

API = "https://api.mediatheques.example.org"


@pytest.fixture
def resource_server(make_client):
    return make_client(
        name="API médiathèques",
        redirect_uris=[],
        grant_types=["client_credentials"],
        is_resource_server=True,
        resource_identifier=API,
    )


@pytest.fixture
def tokens(flow, resource_server):
    return complete_flow(flow, resource=[settings.ISSUER, API])


def introspect(token: str, *, auth: str | None, hint: str | None = None, **extra: Any) -> Any:
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    return BrowserClient(enforce_csrf_checks=True).post("/introspect", data, **headers)


def test_active_access_token_is_described(resource_server, flow, tokens, resident):
    response = introspect(tokens["access_token"], auth=resource_server.basic_auth())
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert body["active"] is True
    assert set(body["scope"].split()) == {"openid", "profile", "email"}
    assert body["client_id"] == flow.rp.client_id
    assert body["sub"] == expected_sub(flow.rp, resident)
    assert isinstance(body["exp"], int) and body["exp"] > time.time()
    assert body.get("token_type", "Bearer").lower() == "bearer"


def test_active_refresh_token_is_described_to_its_own_client(make_client, signed_in):
    # A partner that is also a resource server; a refresh token is never described to
    # another client, resource servers included.
    own = make_client(name="Billetterie et son API", is_resource_server=True)
    tokens = complete_flow(OIDCFlow(signed_in, own))
    body = introspect(tokens["refresh_token"], auth=own.basic_auth(), hint="refresh_token").json()
    assert body["active"] is True
    assert body["client_id"] == own.client_id


def test_client_secret_post_is_accepted(make_client):
    resource_server = make_client(
        name="API médiathèques",
        redirect_uris=[],
        grant_types=["client_credentials"],
        is_resource_server=True,
        token_endpoint_auth_method="client_secret_post",
    )
    credentials = {"client_id": resource_server.client_id, "client_secret": resource_server.secret}
    token = post_token({"grant_type": "client_credentials", **credentials}).json()["access_token"]
    response = BrowserClient().post("/introspect", {"token": token, **credentials})
    assert response.status_code == 200
    assert response.json()["active"] is True  # its own token


def test_revoked_token_is_inactive(resource_server, flow, tokens):
    BrowserClient().post(
        "/revoke", {"token": tokens["access_token"]}, HTTP_AUTHORIZATION=flow.rp.basic_auth()
    )
    body = introspect(tokens["access_token"], auth=resource_server.basic_auth()).json()
    assert body == {"active": False}


def test_revoked_refresh_token_is_inactive(make_client, signed_in):
    own = make_client(name="Billetterie et son API", is_resource_server=True)
    tokens = complete_flow(OIDCFlow(signed_in, own))
    assert introspect(tokens["refresh_token"], auth=own.basic_auth()).json()["active"] is True
    BrowserClient().post(
        "/revoke",
        {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        HTTP_AUTHORIZATION=own.basic_auth(),
    )
    body = introspect(tokens["refresh_token"], auth=own.basic_auth()).json()
    assert body == {"active": False}


def test_expired_token_is_inactive(resource_server, tokens):
    AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    body = introspect(tokens["access_token"], auth=resource_server.basic_auth()).json()
    assert body == {"active": False}


def test_unknown_token_is_inactive(resource_server):
    response = introspect("no-such-token", auth=resource_server.basic_auth())
    assert response.status_code == 200
    assert response.json() == {"active": False}


def test_token_of_inactive_resident_is_inactive(resource_server, tokens, resident):
    resident.is_active = False
    resident.save(update_fields=["is_active"])
    assert introspect(tokens["access_token"], auth=resource_server.basic_auth()).json() == {"active": False}


def test_client_that_is_not_a_resource_server_is_refused(rp, tokens):
    response = introspect(tokens["access_token"], auth=rp.basic_auth())
    assert response.status_code in (401, 403)
    assert "active" not in response.json()


def test_unauthenticated_request_is_401(tokens):
    response = introspect(tokens["access_token"], auth=None)
    assert response.status_code == 401
    assert "active" not in response.json()


def test_wrong_secret_is_401_with_basic_challenge(resource_server, tokens):
    response = introspect(tokens["access_token"], auth=basic(resource_server.client_id, "wrong"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert "active" not in response.json()


def test_bearer_token_is_not_client_authentication(tokens):
    """A resident's access token must not let its holder introspect (RFC 7662 §2.1 needs authorization)."""
    response = introspect(tokens["access_token"], auth=f"Bearer {tokens['access_token']}")
    assert response.status_code == 401


def test_missing_token_parameter_is_invalid_request(resource_server):
    response = BrowserClient().post("/introspect", {}, HTTP_AUTHORIZATION=resource_server.basic_auth())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_failed_basic_for_a_resource_server_plus_body_credentials_of_another_client_is_refused(
    resource_server, rp, tokens
):
    """The client that authenticated is the one authorised, not the one named in a failed header.

    (RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.)
    """
    response = BrowserClient().post(
        "/introspect",
        {"token": tokens["access_token"], "client_id": rp.client_id, "client_secret": rp.secret},
        HTTP_AUTHORIZATION=basic(resource_server.client_id, "wrong"),
    )
    assert response.status_code in (400, 401, 403)
    assert "active" not in response.json()


@pytest.mark.parametrize(
    "parameter", ["client_id", "client_secret", "client_assertion", "client_assertion_type"]
)
def test_client_credentials_in_the_query_string_are_refused(resource_server, tokens, parameter):
    # RFC 6749 §2.3.1: credentials in the body only (oauthlib's request would have read
    # them from the URI too). The request is refused whatever else it carries.
    response = BrowserClient().post(
        f"/introspect?{parameter}=x",
        {"token": tokens["access_token"]},
        HTTP_AUTHORIZATION=resource_server.basic_auth(),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response["Cache-Control"] == "no-store"


def test_other_query_parameters_change_nothing(resource_server, tokens):
    response = BrowserClient().post(
        "/introspect?token=ignored",
        {"token": tokens["access_token"]},
        HTTP_AUTHORIZATION=resource_server.basic_auth(),
    )
    assert response.status_code == 200 and response.json()["active"] is True


def test_the_body_is_what_jsonresponse_gives(resource_server, tokens):
    # identity/oidc/errors.json_answer: JsonResponse's bytes (its separators), its content type.
    response = introspect(tokens["access_token"], auth=resource_server.basic_auth())
    assert response.content == JsonResponse(response.json()).content
    assert response["Content-Type"] == "application/json"
