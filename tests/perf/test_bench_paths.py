"""bench/oidc.py sends its load to the paths each provider's discovery document names.

The same workloads run against ours and against node-oidc-provider (`--reference node`,
bench/README.md): the paths are read from the discovery document at set-up, never written
twice. These tests need no node: our document (served by the test client) must give the
endpoints our URLconf serves, a document shaped as node-oidc-provider 9 writes it must give
its paths, and a document the bench cannot load from is refused.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import resolve

from bench.oidc import DISCOVERY_PATH, BenchError, endpoint_paths

pytestmark = pytest.mark.django_db


def test_our_discovery_gives_the_endpoints_we_serve() -> None:
    document = Client().get(DISCOVERY_PATH).json()

    paths = endpoint_paths(document)

    assert {k: paths[k] for k in ("authorize", "token", "userinfo", "introspect", "jwks")} == {
        "authorize": "/authorize",
        "token": "/token",
        "userinfo": "/userinfo",
        "introspect": "/introspect",
        "jwks": "/jwks.json",
    }
    for path in paths.values():
        resolve(path)  # each loaded path is one of ours (Resolver404 otherwise)


def test_node_oidc_provider_document() -> None:
    # node-oidc-provider writes its endpoints under the origin the request reached.
    origin = "https://127.0.0.1:40123"
    document = {
        "issuer": "https://bench.example",
        "authorization_endpoint": f"{origin}/auth",
        "token_endpoint": f"{origin}/token",
        "userinfo_endpoint": f"{origin}/me",
        "introspection_endpoint": f"{origin}/token/introspection",
        "jwks_uri": f"{origin}/jwks",
    }

    assert endpoint_paths(document) == {
        "discovery": "/.well-known/openid-configuration",
        "healthz": "/healthz",
        "readyz": "/readyz",
        "authorize": "/auth",
        "token": "/token",
        "userinfo": "/me",
        "introspect": "/token/introspection",
        "jwks": "/jwks",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"introspection_endpoint": None},  # introspection not enabled: W2 cannot run
        {"token_endpoint": "/token"},  # not an absolute URL
        {"userinfo_endpoint": "https://bench.example/me?x=1"},  # a query the bench would drop
        {"jwks_uri": 42},
    ],
)
def test_a_document_the_bench_cannot_load_from_is_refused(change: dict[str, object]) -> None:
    document: dict[str, object] = {
        "authorization_endpoint": "https://bench.example/authorize",
        "token_endpoint": "https://bench.example/token",
        "userinfo_endpoint": "https://bench.example/userinfo",
        "introspection_endpoint": "https://bench.example/introspect",
        "jwks_uri": "https://bench.example/jwks.json",
    }
    document.update(change)
    if document["introspection_endpoint"] is None:
        del document["introspection_endpoint"]

    with pytest.raises(BenchError):
        endpoint_paths(document)
