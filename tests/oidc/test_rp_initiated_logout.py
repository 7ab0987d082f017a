"""OpenID Connect RP-Initiated Logout 1.0 (and the certification plan's expectations)."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from jwcrypto import jwk, jwt

from identity.models import AuditEvent, BrowserSession
from tests.conftest import OIDCFlow
from tests.oidc.conftest import expected_sub, location_query, sign_in, userinfo

BYE = "https://rp.example.org/bye"


def end_session(browser: BrowserClient, method: str = "get", **params: Any) -> Any:
    params = {key: value for key, value in params.items() if value is not None}
    if method == "post":
        return browser.post("/end-session", params)
    return browser.get("/end-session", params)


def assert_signed_out(browser: BrowserClient, rp: Any) -> None:
    flow = OIDCFlow(browser, rp)
    query = location_query(flow.authorize(prompt="none"))
    assert query["error"] == ["login_required"]


def assert_still_signed_in(browser: BrowserClient, rp: Any) -> None:
    flow = OIDCFlow(browser, rp)
    response = flow.authorize(prompt="none")
    assert "code" in location_query(response)


def assert_signed_in_here(browser: BrowserClient, rp: Any) -> None:
    """Signed in (whatever the consent state): prompt=none does not answer login_required."""
    query = location_query(OIDCFlow(browser, rp).authorize(prompt="none"))
    assert query.get("error") != ["login_required"], query


def assert_not_redirected_to(response: Any, uri: str) -> None:
    if response.status_code in (301, 302, 303, 307, 308):
        assert not response["Location"].startswith(uri), response["Location"]
    else:
        assert response.status_code in (200, 400, 403)


def tamper(id_token: str) -> str:
    header, payload, signature = id_token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{header}.{payload}.{flipped}"


def test_discovery_has_end_session_endpoint(db):
    metadata = BrowserClient().get("/.well-known/openid-configuration").json()
    assert metadata["end_session_endpoint"] == settings.ISSUER + "/end-session"


@pytest.mark.parametrize("method", ["get", "post"])
def test_logout_with_valid_hint_redirects_with_state_and_ends_session(flow, tokens, method):
    browser = flow.browser
    if method == "post":
        browser = flow.browser
        browser.handler.enforce_csrf_checks = True  # the RP posts cross-site, without our token
    response = end_session(
        browser, method, id_token_hint=tokens["id_token"], post_logout_redirect_uri=BYE, state="xyz-123"
    )
    assert response.status_code in (302, 303), (response.status_code, response.content[:300])
    parts = urlsplit(response["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == BYE
    assert parse_qs(parts.query)["state"] == ["xyz-123"]
    browser.handler.enforce_csrf_checks = False
    assert_signed_out(browser, flow.rp)


def test_logout_without_state_redirects_without_state(flow, tokens):
    response = end_session(flow.browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=BYE)
    assert response.status_code in (302, 303)
    assert response["Location"] == BYE


def test_logout_revokes_the_clients_tokens(flow, tokens):
    end_session(flow.browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=BYE)
    assert userinfo(tokens["access_token"]).status_code == 401


def test_unregistered_post_logout_redirect_uri_is_not_followed(flow, tokens):
    evil = "https://evil.example.org/bye"
    response = end_session(
        flow.browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=evil, state="s"
    )
    assert_not_redirected_to(response, evil)


@pytest.mark.parametrize(
    "uri", ["https://rp.example.org/bye/extra", "https://rp.example.org/bye?x=1", "https://rp.example.org/by"]
)
def test_post_logout_redirect_uri_is_matched_exactly(flow, tokens, uri):
    response = end_session(flow.browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=uri)
    assert_not_redirected_to(response, uri)


def test_tampered_id_token_hint_is_not_trusted(flow, tokens):
    response = end_session(
        flow.browser, id_token_hint=tamper(tokens["id_token"]), post_logout_redirect_uri=BYE, state="s"
    )
    assert_not_redirected_to(response, BYE)


def test_modified_claims_in_id_token_hint_are_not_trusted(flow, tokens):
    header, payload, signature = tokens["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
    claims["aud"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = end_session(
        flow.browser, id_token_hint=f"{header}.{forged}.{signature}", post_logout_redirect_uri=BYE
    )
    assert_not_redirected_to(response, BYE)


def test_id_token_hint_signed_by_a_foreign_key_is_not_trusted(flow, tokens):
    header = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "==="))
    claims = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[1] + "==="))
    foreign = jwk.JWK.generate(kty="RSA", size=2048)
    forged = jwt.JWT(header={"alg": "RS256", "kid": header["kid"]}, claims=claims)
    forged.make_signed_token(foreign)
    response = end_session(flow.browser, id_token_hint=forged.serialize(), post_logout_redirect_uri=BYE)
    assert_not_redirected_to(response, BYE)


def test_hint_of_another_client_with_mismatching_client_id_is_refused(flow, tokens, other_rp):
    response = end_session(
        flow.browser,
        id_token_hint=tokens["id_token"],
        client_id=other_rp.client_id,
        post_logout_redirect_uri=BYE,
    )
    assert_not_redirected_to(response, BYE)


def test_unknown_client_id_is_an_error_not_a_crash(flow):
    response = end_session(flow.browser, client_id="no-such-client", post_logout_redirect_uri=BYE)
    assert response.status_code in (200, 400)
    assert_not_redirected_to(response, BYE)


def test_without_hint_the_resident_is_asked_and_can_confirm(flow, tokens):
    response = end_session(
        flow.browser, client_id=flow.rp.client_id, post_logout_redirect_uri=BYE, state="s1"
    )
    assert response.status_code == 200
    assert b'name="allow"' in response.content
    assert_still_signed_in(flow.browser, flow.rp)
    form = response.context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    confirmed = flow.browser.post("/end-session", {**data, "allow": "true"})
    assert confirmed.status_code in (302, 303)
    assert confirmed["Location"] == BYE + "?state=s1"
    assert_signed_out(flow.browser, flow.rp)


def test_rp_post_without_hint_shows_the_confirmation_page(flow, tokens):
    flow.browser.handler.enforce_csrf_checks = True
    response = end_session(flow.browser, "post", client_id=flow.rp.client_id, post_logout_redirect_uri=BYE)
    flow.browser.handler.enforce_csrf_checks = False
    assert response.status_code == 200
    assert b'name="allow"' in response.content
    assert_still_signed_in(flow.browser, flow.rp)


def test_confirmation_form_is_csrf_protected(flow, tokens):
    flow.browser.handler.enforce_csrf_checks = True
    response = flow.browser.post(
        "/end-session", {"client_id": flow.rp.client_id, "post_logout_redirect_uri": BYE, "allow": "true"}
    )
    flow.browser.handler.enforce_csrf_checks = False
    assert response.status_code == 403
    assert_still_signed_in(flow.browser, flow.rp)


def test_logout_when_already_signed_out_still_redirects_with_valid_hint(flow, tokens):
    flow.browser.logout()
    response = end_session(
        flow.browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=BYE, state="z"
    )
    assert response.status_code in (302, 303)
    assert response["Location"] == BYE + "?state=z"


def test_end_session_page_is_not_cached_or_framed(flow, tokens):
    response = end_session(flow.browser, client_id=flow.rp.client_id)
    assert response.status_code == 200
    assert "no-store" in response.get("Cache-Control", "") or "no-cache" in response.get("Cache-Control", "")
    assert response["X-Frame-Options"] == "DENY"


# --- untrusted requests: never redirected, but the resident can still sign out ----------------


def form_fields(response: Any) -> dict[str, str]:
    """The inputs of the confirmation form as rendered (hidden fields, CSRF token, button)."""
    fields: dict[str, str] = {}

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = dict(attrs)
            if tag in {"input", "button"} and values.get("name"):
                fields[values["name"] or ""] = values.get("value") or ""

    Parser().feed(response.content.decode())
    return {name: value for name, value in fields.items() if name not in {"language", "next"}}


def click_sign_out(browser: BrowserClient, page: Any) -> Any:
    """Press "Se déconnecter" on the page, as a browser would (CSRF checks enforced)."""
    assert "Se déconnecter" in page.content.decode()
    fields = form_fields(page)
    assert fields.get("allow") == "true" and "csrfmiddlewaretoken" in fields
    browser.handler.enforce_csrf_checks = True
    try:
        return browser.post("/end-session", fields)
    finally:
        browser.handler.enforce_csrf_checks = False


def foreign_signed(id_token: str) -> str:
    header = json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "==="))
    claims = json.loads(base64.urlsafe_b64decode(id_token.split(".")[1] + "==="))
    forged = jwt.JWT(header={"alg": "RS256", "kid": header["kid"]}, claims=claims)
    forged.make_signed_token(jwk.JWK.generate(kty="RSA", size=2048))
    return forged.serialize()


def modified_claims(id_token: str) -> str:
    header, payload, signature = id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


UNTRUSTED = {
    "tampered signature": lambda tokens, other: {"id_token_hint": tamper(tokens["id_token"])},
    "modified claims": lambda tokens, other: {"id_token_hint": modified_claims(tokens["id_token"])},
    "foreign key": lambda tokens, other: {"id_token_hint": foreign_signed(tokens["id_token"])},
    "not a JWT": lambda tokens, other: {"id_token_hint": "garbage"},
    "unregistered redirect": lambda tokens, other: {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": "https://evil.example.org/bye",
    },
    "hint of another client": lambda tokens, other: {
        "id_token_hint": tokens["id_token"],
        "client_id": other.client_id,
    },
    "unknown client": lambda tokens, other: {"client_id": "no-such-client", "id_token_hint": None},
}


@pytest.mark.parametrize("case", sorted(UNTRUSTED))
def test_untrusted_request_asks_then_signs_out_without_redirecting(flow, tokens, other_rp, case):
    params = {"post_logout_redirect_uri": BYE, "state": "st", **UNTRUSTED[case](tokens, other_rp)}
    page = end_session(flow.browser, **params)
    assert page.status_code == 200, page.status_code
    assert_still_signed_in(flow.browser, flow.rp)  # asked, not acted on
    fields = form_fields(page)
    # Nothing untrusted is carried into the confirmation.
    assert not {"id_token_hint", "post_logout_redirect_uri", "state", "client_id"} & set(fields)

    done = click_sign_out(flow.browser, page)
    assert done.status_code == 200  # our signed-out page: no redirect at all
    assert "Vous êtes déconnecté" in done.content.decode()
    assert BYE not in done.content.decode() and "evil.example.org" not in done.content.decode()
    assert_signed_out(flow.browser, flow.rp)
    assert userinfo(tokens["access_token"]).status_code == 401


def test_post_from_the_rp_with_untrusted_hint_also_asks(flow, tokens):
    flow.browser.handler.enforce_csrf_checks = True
    page = end_session(
        flow.browser, "post", id_token_hint=tamper(tokens["id_token"]), post_logout_redirect_uri=BYE
    )
    flow.browser.handler.enforce_csrf_checks = False
    assert page.status_code == 200
    assert_still_signed_in(flow.browser, flow.rp)
    assert click_sign_out(flow.browser, page).status_code == 200
    assert_signed_out(flow.browser, flow.rp)


def test_confirmation_with_registered_redirect_returns_state(flow, tokens):
    page = end_session(flow.browser, client_id=flow.rp.client_id, post_logout_redirect_uri=BYE, state="k9")
    done = click_sign_out(flow.browser, page)
    assert done.status_code in (302, 303)
    assert done["Location"] == BYE + "?state=k9"
    assert_signed_out(flow.browser, flow.rp)


def test_hint_from_an_earlier_session_is_confirmed_first(flow, tokens):
    """The ID token names the resident, but not this browser session (§2: MUST ask)."""
    flow.browser.post("/deconnexion/")
    sign_in(flow.browser, "camille@example.org")  # a new session, a new sid
    page = end_session(
        flow.browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=BYE, state="a"
    )
    assert page.status_code == 200
    assert_signed_in_here(flow.browser, flow.rp)
    done = click_sign_out(flow.browser, page)
    assert done["Location"] == BYE + "?state=a"  # the hint is genuine: its redirect is allowed
    assert_signed_out(flow.browser, flow.rp)


def test_hint_of_another_resident_is_confirmed_first(flow, tokens, make_resident):
    other = make_resident("dominique@example.org")
    browser = BrowserClient()
    sign_in(browser, other.email)
    page = end_session(browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=BYE)
    assert page.status_code == 200
    assert_signed_in_here(browser, flow.rp)
    assert_signed_in_here(flow.browser, flow.rp)  # the hint's own session is not touched


def test_valid_hint_without_redirect_shows_signed_out_page(flow, tokens):
    response = end_session(flow.browser, id_token_hint=tokens["id_token"])
    assert response.status_code == 200
    assert "Vous êtes déconnecté" in response.content.decode()
    assert_signed_out(flow.browser, flow.rp)


def test_rp_initiated_logout_ends_the_session_record(flow, tokens):
    end_session(flow.browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=BYE)
    session = BrowserSession.objects.get()
    assert session.ended_at is not None
    assert session.end_reason == "rp_initiated_logout"
    event = AuditEvent.objects.get(event="session.ended")
    assert event.data["reason"] == "rp_initiated_logout"
    assert event.data["clients"] == [flow.rp.client_id]


# --- logout_hint (RP-Initiated Logout 1.0 §2) -------------------------------------------------
#
# "logout_hint: hint to the Authorization Server about the End-User that is logging out."
# We read it as the requesting client knows the resident: its `sub`, or the email address
# (case-insensitive). A hint naming anyone but the signed-in resident never signs them out
# silently: they are asked. The relying party must not learn whether its hint names
# another account of ours: nothing but the signed-in resident is ever compared.


def sub_of(rp: Any, user: Any) -> str:
    return expected_sub(rp, user)


def test_logout_hint_with_the_clients_sub_signs_out_at_once(flow, tokens, resident):
    response = end_session(
        flow.browser,
        id_token_hint=tokens["id_token"],
        logout_hint=sub_of(flow.rp, resident),
        post_logout_redirect_uri=BYE,
        state="h1",
    )
    assert response.status_code in (302, 303), response.status_code
    assert response["Location"] == BYE + "?state=h1"
    assert_signed_out(flow.browser, flow.rp)


@pytest.mark.parametrize("email", ["camille@example.org", "Camille@Example.ORG", " CAMILLE@example.org "])
def test_logout_hint_with_the_email_signs_out_at_once(flow, tokens, email):
    response = end_session(
        flow.browser,
        id_token_hint=tokens["id_token"],
        logout_hint=email,
        post_logout_redirect_uri=BYE,
        state="h2",
    )
    assert response.status_code in (302, 303), response.status_code
    assert response["Location"] == BYE + "?state=h2"
    assert_signed_out(flow.browser, flow.rp)


def test_logout_hint_by_post_from_the_rp_is_honoured(flow, tokens, resident):
    flow.browser.handler.enforce_csrf_checks = True
    try:
        response = end_session(
            flow.browser,
            "post",
            id_token_hint=tokens["id_token"],
            logout_hint=sub_of(flow.rp, resident),
            post_logout_redirect_uri=BYE,
        )
    finally:
        flow.browser.handler.enforce_csrf_checks = False
    assert response.status_code in (302, 303)
    assert_signed_out(flow.browser, flow.rp)


MISMATCHES = {
    "another resident's email": lambda ctx: "dominique@example.org",
    "an unknown email": lambda ctx: "nobody-here@example.org",
    "another resident's sub": lambda ctx: sub_of(ctx["rp"], ctx["other"]),
    "an unknown sub": lambda ctx: "x" * 43,
    "the resident's sub at another sector": lambda ctx: __import__(
        "tests.oidc.conftest", fromlist=["expected_sub"]
    ).expected_sub(ctx["rp"], ctx["resident"], sector="elsewhere.example.net"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_logout_hint_naming_someone_else_asks_first(flow, tokens, resident, make_resident, case):
    other = make_resident("dominique@example.org")
    hint = MISMATCHES[case]({"rp": flow.rp, "other": other, "resident": resident})
    page = end_session(
        flow.browser,
        id_token_hint=tokens["id_token"],
        logout_hint=hint,
        post_logout_redirect_uri=BYE,
        state="h3",
    )
    assert page.status_code == 200
    assert "oidc/logout_confirm.html" in [template.name for template in page.templates]
    assert_still_signed_in(flow.browser, flow.rp)  # not signed out silently
    # The hint is neither shown nor carried into the confirmation (only the language
    # switcher's `next`, our own URL, holds the request's query, as on every page).
    html = re.sub(r'<input type="hidden" name="next" value="[^"]*">', "", page.content.decode())
    assert hint not in html
    assert "logout_hint" not in form_fields(page)

    # The request itself is genuine: once the resident confirms, the RP gets its redirect.
    done = click_sign_out(flow.browser, page)
    assert done.status_code in (302, 303)
    assert done["Location"] == BYE + "?state=h3"
    assert_signed_out(flow.browser, flow.rp)


def _page_without_tokens(response: Any) -> str:
    return re.sub(r'value="[^"]{32,}"', 'value=""', response.content.decode())


def test_confirmation_does_not_reveal_whether_the_hint_names_an_account(flow, tokens, make_resident):
    make_resident("dominique@example.org")
    pages = []
    for hint in ("dominique@example.org", "nobody-here@example.org"):
        page = end_session(
            flow.browser,
            id_token_hint=tokens["id_token"],
            logout_hint=hint,
            post_logout_redirect_uri=BYE,
            state="same",
        )
        assert page.status_code == 200
        pages.append(_page_without_tokens(page).replace(hint, ""))
    assert pages[0] == pages[1]


def test_logout_hint_without_id_token_hint_still_asks(flow, tokens):
    page = end_session(
        flow.browser,
        client_id=flow.rp.client_id,
        logout_hint="camille@example.org",
        post_logout_redirect_uri=BYE,
    )
    assert page.status_code == 200
    assert_still_signed_in(flow.browser, flow.rp)


@pytest.mark.parametrize("hint", ["camille@example.org", "dominique@example.org", "nobody-here@example.org"])
def test_logout_hint_without_a_session_changes_nothing(flow, tokens, make_resident, hint):
    make_resident("dominique@example.org")
    flow.browser.logout()
    with_hint = end_session(
        flow.browser,
        id_token_hint=tokens["id_token"],
        logout_hint=hint,
        post_logout_redirect_uri=BYE,
        state="ns",
    )
    assert with_hint.status_code in (302, 303)
    assert with_hint["Location"] == BYE + "?state=ns"  # as without any logout_hint

    only_client = end_session(
        flow.browser, client_id=flow.rp.client_id, logout_hint=hint, post_logout_redirect_uri=BYE, state="n2"
    )
    assert only_client.status_code in (302, 303)
    assert only_client["Location"] == BYE + "?state=n2"
