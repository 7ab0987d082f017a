"""OpenID Connect Front-Channel Logout 1.0: iframes on the OP's signed-out page."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client as BrowserClient

from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import complete_flow

BYE = "https://rp.example.org/bye"
FRONT = "https://tickets.example.net/oidc/frontchannel-logout?tenant=nantes"


def iframes(response: Any) -> list[dict[str, str | None]]:
    found: list[dict[str, str | None]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "iframe":
                found.append(dict(attrs))

    Parser().feed(response.content.decode())
    return found


def csp(response: Any) -> dict[str, list[str]]:
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


@pytest.fixture
def fcl_rp(make_client: Any) -> Any:
    return make_client(
        name="Billetterie",
        redirect_uris=["https://tickets.example.net/callback"],
        post_logout_redirect_uris=["https://tickets.example.net/bye"],
        frontchannel_logout_uri=FRONT,
        frontchannel_logout_session_required=True,
    )


def sign_in_to(browser: BrowserClient, partner: Any, redirect_uri: str) -> dict[str, Any]:
    flow = OIDCFlow(browser, partner)
    code = flow.get_code(redirect_uri=redirect_uri)
    response = flow.token(code, redirect_uri=redirect_uri)
    assert response.status_code == 200, response.content
    return response.json()


def test_discovery_advertises_frontchannel_logout(db: Any) -> None:
    metadata = BrowserClient().get("/.well-known/openid-configuration").json()
    assert metadata["frontchannel_logout_supported"] is True
    assert metadata["frontchannel_logout_session_supported"] is True


def test_signed_out_page_frames_each_frontchannel_partner_with_iss_and_sid(
    signed_in: BrowserClient, rp: Any, fcl_rp: Any
) -> None:
    rp_tokens = complete_flow(OIDCFlow(signed_in, rp))
    sign_in_to(signed_in, fcl_rp, "https://tickets.example.net/callback")
    sid = verify_id_token(rp_tokens["id_token"], rp.client_id)["sid"]

    response = signed_in.get(
        "/end-session",
        {"id_token_hint": rp_tokens["id_token"], "post_logout_redirect_uri": BYE, "state": "s7"},
    )
    # Not redirected at once: the page must load the partner's logout URI first.
    assert response.status_code == 200
    (frame,) = iframes(response)  # rp has no front-channel URI: one iframe only
    src = urlsplit(frame["src"] or "")
    assert f"{src.scheme}://{src.netloc}{src.path}" == FRONT.split("?")[0]
    query = parse_qs(src.query)
    assert query == {"tenant": ["nantes"], "iss": [settings.ISSUER], "sid": [sid]}
    assert "hidden" in frame and frame["title"]  # invisible, and named for assistive technology
    # ... then leads on to the registered redirect, with state.
    assert f'href="{BYE}?state=s7"' in response.content.decode()

    directives = csp(response)
    assert directives["frame-src"] == ["https://tickets.example.net"]  # exactly the partners' origins
    assert directives["frame-ancestors"] == ["'none'"]  # the page itself is still never framed
    assert directives["default-src"] == ["'self'"]


def test_frame_src_is_allowed_on_the_signed_out_page_only(signed_in: BrowserClient, fcl_rp: Any) -> None:
    for path in ("/", "/compte/", "/connexion/"):
        response = signed_in.get(path)
        assert "frame-src" not in response["Content-Security-Policy"], path
    page = signed_in.get("/end-session", {"client_id": fcl_rp.client_id})
    assert "frame-src" not in page["Content-Security-Policy"]  # the confirmation page frames nothing


def test_confirmed_sign_out_also_frames_the_partners(signed_in: BrowserClient, fcl_rp: Any) -> None:
    sign_in_to(signed_in, fcl_rp, "https://tickets.example.net/callback")
    page = signed_in.get("/end-session")  # no hint: the resident is asked
    assert page.status_code == 200 and not iframes(page)
    done = signed_in.post("/end-session", {"allow": "true"})
    assert done.status_code == 200
    assert len(iframes(done)) == 1
    assert csp(done)["frame-src"] == ["https://tickets.example.net"]


def test_without_frontchannel_partners_the_redirect_is_immediate(
    signed_in: BrowserClient, rp: Any, fcl_rp: Any
) -> None:
    tokens = complete_flow(OIDCFlow(signed_in, rp))
    response = signed_in.get(
        "/end-session", {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE}
    )
    assert response.status_code in (302, 303)
    assert response["Location"] == BYE
