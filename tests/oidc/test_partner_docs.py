"""docs/partners.md cannot drift from what we serve: every endpoint URL, authentication
method, PKCE method, scope and acr value in its configuration examples is checked against
our discovery document (OpenID Connect Discovery 1.0 §3).

The examples are also run for real by tests/oidc/test_rp_libraries.py: its Python blocks as
written, its openid-client block through tests/rp_node/rp.js, which the last test here keeps
in step with the block."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "partners.md"
NODE_SCRIPT = ROOT / "tests" / "rp_node" / "rp.js"
DOC_ISSUER = "https://compte.example.org"


def examples() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Configuration examples", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    assert {lang for lang, _ in blocks} == {"python", "js"}
    named = {}
    for lang, body in blocks:
        key = "mozilla" if "OIDC_OP_" in body else "authlib" if "authlib" in body else lang
        named[key] = body
    assert set(named) == {"mozilla", "authlib", "js"}
    return named


@pytest.fixture
def metadata(client: Any) -> dict[str, Any]:
    return client.get("/.well-known/openid-configuration").json()


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_every_url_in_the_examples_is_one_we_publish(metadata):
    published = {
        path_of(value)
        for value in metadata.values()
        if isinstance(value, str) and value.startswith(settings.ISSUER)
    }
    published.add("/.well-known/openid-configuration")
    for name, body in examples().items():
        urls = re.findall(re.escape(DOC_ISSUER) + r"[^\s\"'`]*", body)
        assert urls, name
        for url in urls:
            if not url.startswith(DOC_ISSUER + "/"):
                continue
            assert path_of(url) in published, (name, url)


def test_mozilla_django_oidc_endpoints_match_discovery(metadata):
    body = examples()["mozilla"]
    settings_map = {
        "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
        "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
        "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
        "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    }
    values = dict(re.findall(r'^(OIDC_\w+) = "([^"]*)"', body, re.M))
    for setting, key in settings_map.items():
        assert path_of(values[setting]) == path_of(metadata[key]), setting
    assert values["OIDC_RP_SIGN_ALGO"] in metadata["id_token_signing_alg_values_supported"]
    assert set(values["OIDC_RP_SCOPES"].split()) <= set(metadata["scopes_supported"])
    assert values["OIDC_PKCE_CODE_CHALLENGE_METHOD"] in metadata["code_challenge_methods_supported"]


def test_methods_scopes_and_levels_in_the_examples_are_supported(metadata):
    text = "\n".join(examples().values())
    methods = re.findall(r"token_endpoint_auth_method[\"']?\s*[:=]\s*[\"']([\w]+)", text)
    assert methods and set(methods) <= set(metadata["token_endpoint_auth_methods_supported"])
    algs = re.findall(r"token_endpoint_auth_signing_alg[\"']?\s*[:=]\s*[\"']([\w]+)", text)
    assert set(algs) <= set(metadata["token_endpoint_auth_signing_alg_values_supported"])
    pkce = re.findall(r"code_challenge_method[\"']?\s*[:=]\s*[\"']([\w]+)", text)
    assert pkce and set(pkce) <= set(metadata["code_challenge_methods_supported"])
    for scope_string in re.findall(r"scope[\"']?\s*[:=]\s*[\"']([\w ]+)[\"']", text):
        assert set(scope_string.split()) <= set(metadata["scopes_supported"]), scope_string
    for acr in re.findall(r"acr_values[\"']?\s*[:=]\s*[\"']([^\"']+)", text):
        assert set(acr.split()) <= set(metadata["acr_values_supported"])
    assert (
        "pushedAuthorizationRequest" in examples()["js"] and metadata["pushed_authorization_request_endpoint"]
    )


def test_scope_table_matches_discovery(metadata):
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("## Scopes and claims", 1)[1].split("\n\n", 2)[1]
    scopes = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert scopes == metadata["scopes_supported"]
    for claim in re.findall(r"`(\w+)`", table):
        if claim not in scopes:
            assert claim in metadata["claims_supported"] or claim in {
                "formatted",
                "street_address",
                "postal_code",
                "locality",
                "region",
                "country",
            }


def test_node_script_makes_the_calls_of_the_openid_client_example():
    """tests/rp_node/rp.js, which test_rp_libraries.py runs, does what the js block says: every
    openid-client call of the block, and every client metadata or parameter value written
    out in it (e.g. `token_endpoint_auth_signing_alg: "ES256"`), is in the script."""
    body = examples()["js"]
    script = NODE_SCRIPT.read_text(encoding="utf-8")
    calls = re.findall(r"\bnew issuer\.Client\(|\b(?:Issuer|generators|client|tokens)\.\w+\(", body)
    assert len(calls) >= 10, calls
    for call in calls:
        assert call in script, call
    assert 'require("openid-client")' in body and 'require("openid-client")' in script
    values = re.findall(r"^\s*(\w+: (?:\"[^\"]*\"|\[\"[^\"]*\"\]),)", body, re.M)
    literal = [value for value in values if "example.org" not in value and "your-client-id" not in value]
    assert len(literal) >= 6, literal
    for value in literal:
        assert value in script, value
    # The variant with a secret described under the block.
    assert 'token_endpoint_auth_method: "client_secret_basic",' in script
    assert "client.authorizationUrl(params)" in script
