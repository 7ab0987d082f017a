"""What partners and residents do over HTTP against a `tests.ops.cluster.Cluster` node.

Small helpers on top of `WebClient` (real sockets, the production server):

- `pkce_pair()`, `basic_auth(client_id, secret)`;
- `internal_partner(cluster, name, **options)`: registers an internal service (no consent
  screen; its information page is acknowledged once per resident by `authorize`) with a
  confidential secret and the `authorization_code` grant, and returns its
  registration (client_id, client_secret, redirect_uri);
- `authorize(web, partner)` → (code, verifier): the authorization request in the signed-in
  browser `web`, through the information page when it is shown;
- `exchange(web, partner, code, verifier)` → the token response (JSON);
- `code_tokens(web, partner, token_web=None)`: both steps, the token request possibly at
  another node;
- `introspect(web, partner, token)`, `revoke(web, partner, token)`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from tests.ops.cluster import Cluster, WebClient

REDIRECT_URI = "https://rp.ops.test/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def basic_auth(client_id: str, secret: str) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def internal_partner(cluster: Cluster, name: str, *argv: str) -> dict[str, Any]:
    registration = cluster.register_client(
        "--name", name, "--internal",
        "--grant", "authorization_code",
        "--redirect-uri", REDIRECT_URI, "--scope", "openid", "--scope", "profile",
        *argv,
    )  # fmt: skip
    registration["redirect_uri"] = REDIRECT_URI
    return registration


def _code_from(location: str, state: str) -> str:
    assert location.startswith(REDIRECT_URI), location
    query = parse_qs(urlsplit(location).query)
    assert query.get("state") == [state], location
    assert "code" in query, location
    return query["code"][0]


def authorize(web: WebClient, partner: dict[str, Any], scope: str = "openid profile") -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(8)
    params = {
        "response_type": "code",
        "client_id": partner["client_id"],
        "redirect_uri": partner["redirect_uri"],
        "scope": scope,
        "state": state,
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    answer = web.get("/authorize", params=params)
    if answer.status_code == 200:  # the internal service's information page, first visit only
        pending = re.search(r'name="pending" value="([^"]+)"', answer.text)
        assert pending, answer.text[:500]
        answer = web.csrf_post("/authorize/information", {"pending": pending.group(1)})
    assert answer.status_code in (302, 303), (answer.status_code, answer.text[:500])
    return _code_from(answer.headers["Location"], state), verifier


def exchange(web: WebClient, partner: dict[str, Any], code: str, verifier: str) -> dict[str, Any]:
    answer = web.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": partner["redirect_uri"],
            "code_verifier": verifier,
        },
        headers={"Authorization": basic_auth(partner["client_id"], partner["client_secret"])},
    )
    assert answer.status_code == 200, (answer.status_code, answer.text[:500])
    return dict(answer.json())


def code_tokens(
    web: WebClient, partner: dict[str, Any], token_web: WebClient | None = None
) -> dict[str, Any]:
    code, verifier = authorize(web, partner)
    return exchange(token_web or web, partner, code, verifier)


def introspect(web: WebClient, partner: dict[str, Any], token: str) -> dict[str, Any]:
    answer = web.post(
        "/introspect",
        data={"token": token},
        headers={"Authorization": basic_auth(partner["client_id"], partner["client_secret"])},
    )
    assert answer.status_code == 200, (answer.status_code, answer.text[:500])
    return dict(answer.json())


def revoke(web: WebClient, partner: dict[str, Any], token: str, hint: str = "") -> int:
    data = {"token": token, **({"token_type_hint": hint} if hint else {})}
    authorization = basic_auth(partner["client_id"], partner["client_secret"])
    answer = web.post("/revoke", data=data, headers={"Authorization": authorization})
    return int(answer.status_code)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    """Poll `condition` every 0.1 s until it holds; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
