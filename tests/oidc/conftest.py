"""Helpers shared by the specification-grouped OIDC/OAuth tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client as BrowserClient

from identity import keys
from identity.oidc.subjects import pairwise_key
from tests.conftest import PASSWORD, OIDCFlow


def basic(client_id: str, secret: str | None) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def post_token(data: dict[str, str], *, auth: str | None = None) -> Any:
    """POST to the token endpoint as a back-end would (no cookies, no CSRF token)."""
    extra = {"HTTP_AUTHORIZATION": auth} if auth else {}
    return BrowserClient(enforce_csrf_checks=True).post("/token", data, **extra)


def location_query(response: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(response["Location"]).query)


def location_base(response: Any) -> str:
    parts = urlsplit(response["Location"])
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def is_consent_page(response: Any) -> bool:
    return response.status_code == 200 and "pending_id" in (response.context or {})


def sign_in(browser: BrowserClient, email: str, next_url: str | None = None) -> Any:
    """Sign in through the real login page, optionally following a `next` URL."""
    url = next_url or "/connexion/"
    response = browser.post(url, {"username": email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    return response


def userinfo(access_token: str, method: str = "get", *, body: bool = False) -> Any:
    browser = BrowserClient(enforce_csrf_checks=True)
    if body:
        # RFC 6750 §2.2: application/x-www-form-urlencoded entity-body.
        return browser.post(
            "/userinfo",
            urlencode({"access_token": access_token}),
            content_type="application/x-www-form-urlencoded",
        )
    auth = {"HTTP_AUTHORIZATION": f"Bearer {access_token}"}
    if method == "post":
        return browser.post("/userinfo", **auth)
    return browser.get("/userinfo", **auth)


def complete_flow(flow: OIDCFlow, **overrides: Any) -> dict[str, Any]:
    """Authorize (approving consent if asked), redeem the code, return the token response."""
    code = flow.get_code(**overrides)
    response = flow.token(code)
    assert response.status_code == 200, response.content
    return response.json()


_SESSION_KEYS: dict[str, Any] = {}


@pytest.fixture
def signing_keys(db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shared fixture, minus generating fresh RSA-3072 material for every test.

    The first key of each algorithm a test creates reuses key material generated once per
    session (its row, kid and encryption are still made by identity.keys); any further key
    in the same test, e.g. a rotation, is freshly generated.
    """
    generate = keys._generate
    used: set[str] = set()

    def generate_once_per_session(algorithm: str) -> Any:
        if algorithm in used:
            return generate(algorithm)
        used.add(algorithm)
        if algorithm not in _SESSION_KEYS:
            _SESSION_KEYS[algorithm] = generate(algorithm)
        return _SESSION_KEYS[algorithm]

    monkeypatch.setattr(keys, "_generate", generate_once_per_session)
    return keys.signing_keys_ensure()


@pytest.fixture
def tokens(flow: OIDCFlow) -> dict[str, Any]:
    return complete_flow(flow)


@pytest.fixture
def other_rp(make_client: Any) -> Any:
    """A second confidential client registered with the same redirect URI."""
    return make_client(name="Médiathèques")


def expected_sub(rp: Any, user: Any, sector: str | None = None) -> str:
    """OIDC Core §8.1, computed here from the documented formula (not by our code):
    public (the account id) for internal services, else
    base64url(HMAC-SHA-256(PAIRWISE_SUBJECT_KEY, sector "\\n" user id)), sector = the
    sector identifier URI's host or the redirect URIs' host."""
    client = getattr(rp, "client", rp)
    if client.is_internal:
        return str(user.pk)
    if sector is None:
        source = client.sector_identifier_uri or client.redirect_uris.split()[0]
        sector = urlsplit(source).hostname or ""
    digest = hmac.new(pairwise_key(), f"{sector}\n{user.pk}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- a relying party on a real local port (back-channel logout), and real worker processes ---

from tests.connectors.conftest import run_worker  # noqa: E402,F401  (fixture, re-exported)
from tests.local_servers import DocumentServer, RecordingServer  # noqa: E402


class RelyingPartyServer(RecordingServer):
    """A partner's back-channel logout endpoint on 127.0.0.1 (tests/local_servers.py)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__("/oidc/backchannel-logout", port)


@pytest.fixture
def relying_party() -> Any:
    server = RelyingPartyServer()
    yield server
    server.close()


# --- a partner's sector identifier document on a real local port (OIDC Core §8.1) -----------


# A partner's sector identifier document on a real local port (tests/local_servers.py).
SectorDocumentServer = DocumentServer


@pytest.fixture
def sector_server() -> Any:
    server = SectorDocumentServer()
    yield server
    server.close()


def closed_port_url(path: str = "/sector.json") -> str:
    """An http URL on loopback where nothing listens (the port was just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
