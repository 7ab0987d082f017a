"""Client authentication with `private_key_jwt` (OIDC Core §9, RFC 7523 §2.2 and §3).

The client signs a JWT with its own private key: `iss` = `sub` = client_id, `aud` the
authorization server's issuer identifier alone (endpoint URLs are refused: see
tests/security/test_client_assertion_audience.py), `exp` soon (we accept at most 5
minutes ahead), a `jti` used once. We verify it with the client's registered public keys
(inline JWKS, or fetched from its `jwks_uri`, served here by a real local HTTP server).
A client may only use the method it registered.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from django.conf import settings
from jwcrypto import jwk, jwt

from identity.oidc.client_uris import ClientConfigError
from identity.oidc.clients import client_register
from tests.conftest import REDIRECT_URI, OIDCFlow, RegisteredClient, clear_test_caches, verify_id_token
from tests.oidc.conftest import post_token

pytestmark = pytest.mark.django_db

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def token_url() -> str:
    return settings.ISSUER + "/token"


def public_jwks(*keys: jwk.JWK) -> dict[str, Any]:
    return {"keys": [dict(json.loads(key.export_public()), kid=key.thumbprint(), use="sig") for key in keys]}


def assertion(client_id: str, key: jwk.JWK, alg: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": settings.ISSUER, "iat": now, "exp": now + 60}
    claims["jti"] = str(uuid.uuid4())
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    token = jwt.JWT(header={"alg": alg, "kid": key.thumbprint()}, claims=claims)
    token.make_signed_token(key)
    return token.serialize()


def client_credentials(client_assertion: str, **extra: str) -> Any:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        **extra,
    }
    return post_token(data)


@pytest.fixture(scope="module")
def rsa_key() -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=2048)


@pytest.fixture
def machine(signing_keys: Any, rsa_key: jwk.JWK) -> Any:
    client, secret = client_register(
        name="Passerelle billettique",
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=["profile"],
        token_endpoint_auth_method="private_key_jwt",
        jwks=public_jwks(rsa_key),
    )
    assert secret is None  # no shared secret at all
    return client


def test_valid_assertion_authenticates(machine, rsa_key):
    response = client_credentials(assertion(machine.client_id, rsa_key))
    assert response.status_code == 200, response.content
    assert response.json()["access_token"]


def test_issuer_alone_in_an_array_is_an_accepted_audience(machine, rsa_key):
    response = client_credentials(assertion(machine.client_id, rsa_key, aud=[settings.ISSUER]))
    assert response.status_code == 200, response.content


def test_replayed_jti_is_refused(machine, rsa_key):
    signed = assertion(machine.client_id, rsa_key)
    assert client_credentials(signed).status_code == 200
    replay = client_credentials(signed)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://other-as.example/token"},
        {"aud": token_url()},
        {"exp": int(time.time()) - 120},
        {"exp": int(time.time()) + 3600},  # more than 5 minutes ahead
        {"exp": None},
        {"jti": None},
        {"iss": "someone-else"},
        {"sub": "someone-else"},
        {"iat": int(time.time()) + 3600},
    ],
    ids=[
        "wrong-aud",
        "token-endpoint-aud",
        "expired",
        "too-long",
        "no-exp",
        "no-jti",
        "wrong-iss",
        "wrong-sub",
        "future-iat",
    ],
)
def test_bad_assertions_are_refused(machine, rsa_key, overrides):
    response = client_credentials(assertion(machine.client_id, rsa_key, **overrides))
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "invalid_client"


def test_assertion_signed_with_another_key_is_refused(machine):
    stranger = jwk.JWK.generate(kty="RSA", size=2048)
    response = client_credentials(assertion(machine.client_id, stranger))
    assert response.status_code == 401


def test_alg_none_and_hmac_are_refused(machine, rsa_key):
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"iss": machine.client_id, "sub": machine.client_id, "aud": settings.ISSUER}
    claims.update({"exp": int(time.time()) + 60, "jti": "x"})
    unsigned = f"{b64({'alg': 'none'})}.{b64(claims)}."
    response = client_credentials(unsigned)
    assert response.status_code == 401
    hmac_key = jwk.JWK.generate(kty="oct", size=256)
    response = client_credentials(assertion(machine.client_id, hmac_key, alg="HS256"))
    assert response.status_code == 401


def test_a_private_key_jwt_client_cannot_fall_back_to_a_secret(machine):
    response = post_token(
        {"grant_type": "client_credentials", "client_id": machine.client_id, "client_secret": ""}
    )
    assert response.status_code == 401


def test_a_secret_client_cannot_send_an_assertion(make_client, rsa_key):
    secret_client = make_client(redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"])
    response = client_credentials(assertion(secret_client.client_id, rsa_key))
    assert response.status_code == 401


def test_two_methods_at_once_are_refused(machine, rsa_key, make_client):
    secret_client = make_client(redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"])
    response = post_token(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(machine.client_id, rsa_key),
        },
        auth=secret_client.basic_auth(),
    )
    assert response.status_code == 401


def test_keys_from_jwks_uri_served_over_http(signing_keys, sector_server):
    clear_test_caches()
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    jwks_uri = sector_server.serve_json("/jwks.json", public_jwks(key))
    try:
        client, _ = client_register(
            name="Réseau transport",
            redirect_uris=[],
            grant_types=["client_credentials"],
            scopes=["profile"],
            token_endpoint_auth_method="private_key_jwt",
            jwks_uri=jwks_uri,
        )
        first = client_credentials(assertion(client.client_id, key, alg="ES256"))
        assert first.status_code == 200, first.content
        second = client_credentials(assertion(client.client_id, key, alg="ES256"))
        assert second.status_code == 200
        assert len(sector_server.requested) == 1  # cached

        # The client rotates its key: an unknown signature makes us fetch once more.
        rotated = jwk.JWK.generate(kty="EC", crv="P-256")
        sector_server.serve_json("/jwks.json", public_jwks(rotated))
        third = client_credentials(assertion(client.client_id, rotated, alg="ES256"))
        assert third.status_code == 200, third.content
        assert len(sector_server.requested) == 2
        # The old key is gone from its JWKS.
        assert client_credentials(assertion(client.client_id, key, alg="ES256")).status_code == 401
    finally:
        clear_test_caches()


def test_authorization_code_flow_with_private_key_jwt(signing_keys, signed_in, rsa_key):
    client, _ = client_register(
        name="Billetterie",
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code"],
        token_endpoint_auth_method="private_key_jwt",
        jwks=public_jwks(rsa_key),
    )
    flow = OIDCFlow(signed_in, RegisteredClient(client, None))
    code = flow.get_code()
    response = post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(client.client_id, rsa_key),
        }
    )
    assert response.status_code == 200, response.content
    assert verify_id_token(response.json()["id_token"], client.client_id)["aud"] == client.client_id


def test_registration_checks_the_keys(signing_keys, rsa_key):
    base = {"name": "X", "redirect_uris": [], "grant_types": ["client_credentials"], "scopes": ["profile"]}
    with pytest.raises(ClientConfigError):
        client_register(**base, token_endpoint_auth_method="private_key_jwt")  # no keys
    with pytest.raises(ClientConfigError):
        private = {"keys": [json.loads(rsa_key.export_private())]}
        client_register(**base, token_endpoint_auth_method="private_key_jwt", jwks=private)
    with pytest.raises(ClientConfigError):
        client_register(**base, token_endpoint_auth_method="private_key_jwt", jwks_uri="http://example.org/k")
    with pytest.raises(ClientConfigError):
        client_register(**base, jwks=public_jwks(rsa_key))  # keys without private_key_jwt


def test_discovery_lists_private_key_jwt(client):
    metadata = client.get("/.well-known/openid-configuration").json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["token_endpoint_auth_signing_alg_values_supported"] == ["RS256", "ES256"]


def test_a_redirecting_jwks_uri_is_not_followed(signing_keys, sector_server):
    """The JWKS URI was checked at registration; a 3xx would send us elsewhere (SSRF)."""
    clear_test_caches()
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    target = sector_server.serve_json("/elsewhere.json", public_jwks(key))
    jwks_uri = sector_server.serve_raw("/jwks.json", b"", status=302, headers={"Location": target})
    client, _ = client_register(
        name="Réseau transport",
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=["profile"],
        token_endpoint_auth_method="private_key_jwt",
        jwks_uri=jwks_uri,
    )
    try:
        response = client_credentials(assertion(client.client_id, key, alg="ES256"))
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert sector_server.requested == ["/jwks.json"]
    finally:
        clear_test_caches()
