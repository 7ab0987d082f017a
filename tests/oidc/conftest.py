"""Helpers shared by the specification-grouped OIDC/OAuth tests."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client as BrowserClient

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
    from identity import keys

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
    import hashlib
    import hmac

    from identity.oidc.subjects import pairwise_key

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


class RelyingPartyServer:
    """A partner's back-channel logout endpoint on 127.0.0.1: records every POST it receives.

    Answers `status` (settable while running). `port` may be given to come back on the
    port of a server that went down.
    """

    def __init__(self, port: int = 0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.status = 200
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        rp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                with rp.lock:
                    rp.received.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type", ""),
                            "fields": {k: v[0] for k, v in parse_qs(body).items()},
                        }
                    )
                    status = rp.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oidc/backchannel-logout"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relying_party() -> Any:
    server = RelyingPartyServer()
    yield server
    server.close()


# --- a partner's sector identifier document on a real local port (OIDC Core §8.1) -----------


class SectorDocumentServer:
    """Serves documents by path on 127.0.0.1 over plain HTTP (loopback http is allowed outside
    production). `routes[path] = (status, headers, body)`; unknown paths answer 404. Every
    path requested is recorded in `requested`."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requested: list[str] = []
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                import time

                server.requested.append(self.path)
                if server.delay:
                    time.sleep(server.delay)
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout, size limit)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve_json(self, path: str, document: Any, status: int = 200) -> str:
        import json

        body = json.dumps(document).encode()
        self.routes[path] = (status, {"Content-Type": "application/json"}, body)
        return self.url(path)

    def serve_raw(
        self, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None
    ) -> str:
        self.routes[path] = (status, headers or {"Content-Type": "application/json"}, body)
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sector_server() -> Any:
    server = SectorDocumentServer()
    yield server
    server.close()


def closed_port_url(path: str = "/sector.json") -> str:
    """An http URL on loopback where nothing listens (the port was just released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
