"""Partners' apps against the running provider (live_server, a real port), in headless Chromium.

- A single-page app built on oidc-client-ts (the npm package, tests/rp_node, `npm ci --prefix
  tests/rp_node`), served from its own origin by a small static server on 127.0.0.1: it
  reads the discovery document, sends the resident to sign in, exchanges the code, calls
  userinfo (the library's and a plain `fetch`), refreshes with the refresh token and revokes
  it, all from the page, across origins (identity/oidc/cors.py). The same app served from an
  origin the client did not register gets nothing: the library reports the failure and no
  token is issued.
- A native-style app (RFC 8252 §7.3): a real HTTP listener on an ephemeral loopback port
  receives the code in the browser's redirect; the app redeems it on the token endpoint and
  calls userinfo, as AppAuth does. Its redirect URI is registered once without a port, with
  the deployment's production rule for http redirect URIs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from oauth2_provider.models import get_access_token_model

from tests.conftest import PASSWORD
from tests.local_servers import DocumentServer, RecordingServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BUNDLE = (
    Path(__file__).resolve().parents[1]
    / "rp_node"
    / "node_modules"
    / "oidc-client-ts"
    / "dist"
    / "browser"
    / "oidc-client-ts.min.js"
)

# The partner's page: one file, the sign-in button and the callback (oidc-client-ts's
# defaults: authorization code with PKCE S256, response_mode=query, state in sessionStorage).
APP = """<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Appli (partenaire)</title>
<script src="/oidc-client-ts.min.js"></script>
<script>
const provider = {provider};
const manager = new oidc.UserManager({{
  authority: provider,
  client_id: {client_id},
  redirect_uri: location.origin + "/app.html",
  response_type: "code",
  scope: "openid profile email",
  loadUserInfo: true,
  automaticSilentRenew: false,
}});
function done(result) {{
  document.getElementById("result").textContent = JSON.stringify(result);
  document.documentElement.setAttribute("data-done", result.ok ? "ok" : "failed");
}}
async function callback() {{
  const user = await manager.signinCallback();
  const bearer = {{Authorization: "Bearer " + user.access_token}};
  const answer = await fetch(provider + "/userinfo", {{headers: bearer}});
  const info = await answer.json();
  const renewed = await manager.signinSilent();
  await manager.revokeTokens(["refresh_token"]);
  return {{
    ok: true,
    profile_email: user.profile.email,
    sub: user.profile.sub,
    userinfo_email: info.email,
    renewed_access: renewed.access_token !== user.access_token,
    rotated_refresh: Boolean(renewed.refresh_token) && renewed.refresh_token !== user.refresh_token,
    refresh_token: renewed.refresh_token,
  }};
}}
document.addEventListener("DOMContentLoaded", function () {{
  document.getElementById("signin").addEventListener("click", function () {{ manager.signinRedirect(); }});
  const query = new URLSearchParams(location.search);
  if (query.has("code") || query.has("error")) {{
    callback().then(done, function (error) {{
      done({{ok: false, error: String(error && error.message || error)}});
    }});
  }}
}});
</script></head>
<body><main><h1>Appli</h1><button id="signin" type="button">Se connecter</button>
<pre id="result"></pre></main></body></html>
"""


def bundle_or_skip() -> bytes:
    if BUNDLE.exists():
        return BUNDLE.read_bytes()
    reason = "oidc-client-ts is not installed: npm ci --prefix tests/rp_node"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the single-page app test (.ci/run installs it)")
    pytest.skip(reason)


def serve_app(server: DocumentServer, *, provider: str, client_id: str, bundle: bytes) -> str:
    page = APP.format(provider=json.dumps(provider), client_id=json.dumps(client_id)).encode()
    server.serve_raw("/app.html", page, headers={"Content-Type": "text/html; charset=utf-8"})
    server.serve_raw("/oidc-client-ts.min.js", bundle, headers={"Content-Type": "text/javascript"})
    return server.url("/app.html")


def sign_in_on_provider(page: Any, email: str) -> None:
    page.locator("input[name=username]").fill(email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[name=password]").press("Enter")


@pytest.fixture
def spa_servers() -> Any:
    registered, foreign = DocumentServer(), DocumentServer()
    yield registered, foreign
    registered.close()
    foreign.close()


def test_single_page_app_signs_in_calls_userinfo_refreshes_and_revokes(
    page: Any, live_server: Any, settings: Any, make_client: Any, resident: Any, spa_servers: Any
) -> None:
    bundle = bundle_or_skip()
    settings.ISSUER = live_server.url
    server, foreign = spa_servers
    origin, foreign_origin = server.address(""), foreign.address("")
    app = make_client(
        name="Appli web de la billetterie",
        public=True,
        redirect_uris=[f"{origin}/app.html", f"{foreign_origin}/app.html"],
        allowed_origins=[origin],  # the foreign page's origin is NOT registered
    )
    url = serve_app(server, provider=live_server.url, client_id=app.client_id, bundle=bundle)

    page.goto(url)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(f"{live_server.url}/connexion/**")
    sign_in_on_provider(page, resident.email)
    # The consent screen names the app; this is a web app, not one on the device.
    page.get_by_role("button", name="Autoriser").wait_for()
    assert "Appli web de la billetterie" in page.content()
    assert "installée sur votre appareil" not in page.content()
    page.get_by_role("button", name="Autoriser").click()
    page.locator("html[data-done]").wait_for(state="attached", timeout=20000)
    result = json.loads(page.locator("#result").text_content() or "{}")
    assert result["ok"] is True, result
    assert result["profile_email"] == resident.email
    assert result["userinfo_email"] == resident.email
    assert result["renewed_access"] and result["rotated_refresh"]
    # Revoked from the page: the refresh token no longer works.
    revoked = _post(
        live_server.url + "/token",
        {"grant_type": "refresh_token", "refresh_token": result["refresh_token"], "client_id": app.client_id},
    )
    assert revoked[0] == 400 and revoked[1]["error"] == "invalid_grant"

    # The same app served from an origin the client did not register: the resident is
    # still signed in and has consented, so the provider sends the code back at once, but
    # the token request from that page is refused and the library reports a failure.
    issued_before = get_access_token_model().objects.filter(application=app.client).count()
    foreign_url = serve_app(foreign, provider=live_server.url, client_id=app.client_id, bundle=bundle)
    page.goto(foreign_url)
    page.get_by_role("button", name="Se connecter").click()
    page.locator("html[data-done]").wait_for(state="attached", timeout=20000)
    failed = json.loads(page.locator("#result").text_content() or "{}")
    assert failed["ok"] is False, failed
    assert "fetch" in failed["error"].lower(), failed  # the browser withheld the answer
    assert get_access_token_model().objects.filter(application=app.client).count() == issued_before


def _post(url: str, data: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=urlencode(data).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get_json(url: str, token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.loads(answer.read())


def test_native_app_receives_the_code_on_an_ephemeral_loopback_port(
    page: Any, live_server: Any, settings: Any, make_client: Any, resident: Any
) -> None:
    settings.ISSUER = live_server.url
    settings.ALLOW_HTTP_LOOPBACK_REDIRECTS = False  # production's rule: only RFC 8252's loopback
    app = make_client(
        name="Appli Nantes Métropole",
        public=True,
        redirect_uris=["http://127.0.0.1/callback", "fr.nantesmetropole.app:/callback"],
    )
    listener = RecordingServer("/callback")  # the app's listener, on a port the OS chose
    try:
        redirect_uri = f"http://127.0.0.1:{listener.port}/callback"
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(12)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": app.client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid email",
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        page.goto(f"{live_server.url}/authorize?{query}")
        sign_in_on_provider(page, resident.email)
        page.get_by_role("button", name="Autoriser").wait_for()
        assert "Appli Nantes Métropole" in page.content()
        assert "est une application installée sur votre appareil" in page.content()
        page.get_by_role("button", name="Autoriser").click()
        page.wait_for_url(f"http://127.0.0.1:{listener.port}/callback?**")
        received = [hit for hit in listener.received if hit["path"].startswith("/callback?")]
        assert len(received) == 1
        params = parse_qs(urlsplit(received[0]["path"]).query)
        assert params["state"] == [state]
        status, tokens = _post(
            live_server.url + "/token",
            {
                "grant_type": "authorization_code",
                "code": params["code"][0],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
                "client_id": app.client_id,
            },
        )
        assert status == 200, tokens
        status, info = _get_json(live_server.url + "/userinfo", tokens["access_token"])
        assert status == 200 and info["email"] == resident.email
    finally:
        listener.close()
