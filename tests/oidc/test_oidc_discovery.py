"""OpenID Connect Discovery 1.0 §3-4 and RFC 8414 (authorization server metadata), plus the
JWKS document they point to (RFC 7517)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from django.urls import Resolver404, resolve

from identity.keys import signing_key_create

REQUIRED_OP_METADATA = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
)
ENDPOINT_FIELDS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "revocation_endpoint",
    "introspection_endpoint",
    "end_session_endpoint",
)
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


@pytest.fixture
def metadata(db):
    response = BrowserClient().get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    return response.json()


@pytest.fixture
def as_metadata(db):
    response = BrowserClient().get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    return response.json()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == urlsplit(settings.ISSUER)._replace(path="").geturl()
    return parts.path


def test_issuer_is_the_configured_issuer(metadata):
    assert metadata["issuer"] == settings.ISSUER
    assert not metadata["issuer"].endswith("/")


def test_document_is_served_at_issuer_plus_well_known(metadata):
    """Discovery §4: issuer + /.well-known/openid-configuration."""
    issuer_path = urlsplit(settings.ISSUER).path.rstrip("/")
    response = BrowserClient().get(issuer_path + "/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.json()["issuer"] == settings.ISSUER


def test_required_fields_are_present(metadata):
    for field in REQUIRED_OP_METADATA:
        assert metadata.get(field), field
    assert "openid" in metadata["scopes_supported"]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert "none" not in metadata["id_token_signing_alg_values_supported"]
    assert set(metadata["subject_types_supported"]) <= {"public", "pairwise"}


def test_every_advertised_endpoint_resolves(metadata, signing_keys):
    for field in ENDPOINT_FIELDS:
        url = metadata.get(field)
        assert url, field
        path = path_of(url)
        try:
            resolve(path)
        except Resolver404:  # pragma: no cover - the assertion below explains
            pytest.fail(f"{field} {url} does not resolve")
        response = BrowserClient().get(path)
        assert response.status_code != 404, (field, url)
        assert response.status_code < 500, (field, url)


def test_endpoints_use_the_issuer_origin(metadata):
    issuer = urlsplit(settings.ISSUER)
    for field in ENDPOINT_FIELDS:
        parts = urlsplit(metadata[field])
        assert (parts.scheme, parts.netloc) == (issuer.scheme, issuer.netloc), field


def test_response_types_supported_is_exactly_code(metadata, as_metadata):
    assert metadata["response_types_supported"] == ["code"]
    assert as_metadata["response_types_supported"] == ["code"]


def test_no_implicit_or_password_grant_advertised(metadata, as_metadata):
    for document in (metadata, as_metadata):
        grants = document.get("grant_types_supported", ["authorization_code", "implicit"])
        assert "implicit" not in grants
        assert "password" not in grants
        assert "authorization_code" in grants


def test_response_modes_do_not_include_fragment(metadata):
    assert "fragment" not in metadata.get("response_modes_supported", ["query", "fragment"])


def test_token_endpoint_auth_methods(metadata):
    methods = metadata.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    assert "client_secret_basic" in methods
    assert "client_secret_post" in methods


def test_claims_and_request_parameter_support_is_declared_truthfully(metadata):
    assert metadata.get("request_parameter_supported", False) is False
    assert metadata.get("request_uri_parameter_supported", True) is False


def test_rfc9207_iss_parameter_support_is_declared(metadata, as_metadata):
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert as_metadata["authorization_response_iss_parameter_supported"] is True


def test_rfc8414_metadata_agrees_with_openid_configuration(metadata, as_metadata):
    assert as_metadata["issuer"] == metadata["issuer"] == settings.ISSUER
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert as_metadata[field] == metadata[field]


def test_jwks_is_served_with_unique_kids_and_no_private_parts(metadata, signing_keys):
    response = BrowserClient().get(path_of(metadata["jwks_uri"]))
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids))
    for key in keys:
        assert key["kty"] in ("RSA", "EC")
        assert key.get("use", "sig") == "sig"
        for member in PRIVATE_JWK_MEMBERS:
            assert member not in key, (key["kid"], member)
    assert any(key["kty"] == "RSA" and key.get("alg", "RS256") == "RS256" for key in keys)


def test_jwks_has_unique_kids_after_rotation(signing_keys):
    signing_key_create(algorithm="RS256")
    keys = BrowserClient().get("/jwks.json").json()["keys"]
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids)) >= 3
