"""Issue 9, finding 6: a `private_key_jwt` client assertion is accepted only for our issuer.

Since the 2025 audience-injection disclosure (OpenID Foundation guidance for RFC 7523 client
authentication), an assertion's `aud` must be the authorization server's issuer identifier
alone: a string, or an array holding exactly it. An assertion made for an endpoint URL (the
token endpoint, PAR, introspection, revocation) or naming several audiences could have been
obtained by another party that the client sent it to, and replayed here; it is refused with
`invalid_client` at every endpoint that authenticates clients.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from jwcrypto import jwk, jwt

from identity.oidc.clients import client_register
from tests.conftest import REDIRECT_URI, pkce_pair

pytestmark = pytest.mark.django_db

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ENDPOINTS = ("token", "par", "introspect", "revoke")


@pytest.fixture(scope="module")
def key() -> jwk.JWK:
    return jwk.JWK.generate(kty="EC", crv="P-256")


@pytest.fixture
def partner(signing_keys: Any, key: jwk.JWK) -> Any:
    """One client that may use all four endpoints: code + client credentials, a resource server."""
    public = dict(json.loads(key.export_public()), kid=key.thumbprint(), use="sig")
    client, secret = client_register(
        name="Réseau transport",
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code", "client_credentials"],
        scopes=["openid", "profile"],
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [public]},
        is_resource_server=True,
    )
    assert secret is None
    return client


def assertion(client_id: str, key: jwk.JWK, aud: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60}
    claims["jti"] = str(uuid.uuid4())
    token = jwt.JWT(header={"alg": "ES256", "kid": key.thumbprint()}, claims=claims)
    token.make_signed_token(key)
    return token.serialize()


def call(endpoint: str, client: Any, key: jwk.JWK, aud: Any) -> Any:
    data: dict[str, str] = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(client.client_id, key, aud),
    }
    if endpoint == "token":
        data["grant_type"] = "client_credentials"
    elif endpoint == "par":
        data.update(
            client_id=client.client_id,
            response_type="code",
            redirect_uri=REDIRECT_URI,
            scope="openid",
            state="s",
            code_challenge=pkce_pair()[1],
            code_challenge_method="S256",
        )
    else:
        data["token"] = "no-such-token"
    return BrowserClient(enforce_csrf_checks=True).post(f"/{endpoint}", data)


def endpoint_url(name: str) -> str:
    return f"{settings.ISSUER}/{name}"


SUCCESS = {"token": 200, "par": 201, "introspect": 200, "revoke": 200}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("aud", ["issuer", "[issuer]"])
def test_the_issuer_alone_is_accepted(partner, key, endpoint, aud):
    audience = settings.ISSUER if aud == "issuer" else [settings.ISSUER]
    response = call(endpoint, partner, key, audience)
    assert response.status_code == SUCCESS[endpoint], response.content


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "aud",
    [
        "token endpoint",
        "this endpoint",
        "[issuer, token endpoint]",
        "[token endpoint, issuer]",
        "[issuer, issuer]",
        "issuer/",
        "[]",
    ],
)
def test_endpoint_urls_and_longer_arrays_are_refused(partner, key, endpoint, aud):
    audience = {
        "token endpoint": endpoint_url("token"),
        "this endpoint": endpoint_url(endpoint),
        "[issuer, token endpoint]": [settings.ISSUER, endpoint_url("token")],
        "[token endpoint, issuer]": [endpoint_url("token"), settings.ISSUER],
        "[issuer, issuer]": [settings.ISSUER, settings.ISSUER],
        "issuer/": settings.ISSUER + "/",
        "[]": [],
    }[aud]
    response = call(endpoint, partner, key, audience)
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "invalid_client"
    assert "active" not in response.json()


def test_a_refused_assertion_does_not_consume_a_code(partner, key, signed_in):
    """At the token endpoint with a code: client authentication fails before the code is used."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": partner.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = signed_in.get("/authorize", params)
    if response.status_code == 200:  # consent page
        response = signed_in.post(
            "/authorize/decision", {"pending": response.context["pending_id"], "decision": "allow"}
        )

    code = parse_qs(urlsplit(response["Location"]).query)["code"][0]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "client_assertion_type": ASSERTION_TYPE,
    }
    refused = BrowserClient().post(
        "/token", {**data, "client_assertion": assertion(partner.client_id, key, endpoint_url("token"))}
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    accepted = BrowserClient().post(
        "/token", {**data, "client_assertion": assertion(partner.client_id, key, settings.ISSUER)}
    )
    assert accepted.status_code == 200, accepted.content
