"""Finding 4: a pushed `prompt=login` / `max_age` was dropped when the sign-in was skipped.

The attack: a browser with a session opens the PAR request_uri, is sent to
`/connexion/?next=…`, opens `next` without signing in, and got a code whose `auth_time` was
the old session's. The rule now (identity/oidc/views/authorize.py, `_needs_login`): when
`prompt=login` or `max_age` sends the browser to sign in, the moment is recorded with the
request; resuming it needs a sign-in at or after that moment, and then proceeds (no loop).
The same holds for requests that are not pushed.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client as BrowserClient

from identity.sessions import SESSION_AUTH_TIME
from tests.conftest import PASSWORD, OIDCFlow, verify_id_token

HOUR = 3600


def push(flow: OIDCFlow, **overrides: Any) -> str:
    response = BrowserClient().post(
        "/par", flow.authorize_params(**overrides), HTTP_AUTHORIZATION=flow.rp.basic_auth()
    )
    assert response.status_code == 201, response.content
    return response.json()["request_uri"]


def open_pushed(flow: OIDCFlow, request_uri: str) -> Any:
    return flow.browser.get("/authorize", {"client_id": flow.rp.client_id, "request_uri": request_uri})


def age_the_session(browser: BrowserClient, seconds: int = HOUR) -> int:
    """The resident signed in an hour ago (a session left open on a shared computer)."""
    session = browser.session
    session[SESSION_AUTH_TIME] = int(time.time()) - seconds
    session.save()
    return session[SESSION_AUTH_TIME]


def is_sign_in_redirect(response: Any) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/connexion/")


def next_url(response: Any) -> str:
    return parse_qs(urlsplit(response["Location"]).query)["next"][0]


def skip_sign_in(flow: OIDCFlow, first: Any) -> Any:
    """Open the `next` of the sign-in redirect directly, as the review did."""
    return flow.browser.get(next_url(first))


def sign_in_then_follow(flow: OIDCFlow, first: Any, email: str) -> Any:
    login = flow.browser.post(first["Location"], {"username": email, "password": PASSWORD})
    assert login.status_code == 302, login.content[:300]
    response = flow.browser.get(login["Location"])
    if response.status_code == 200 and "pending_id" in (response.context or {}):
        response = flow.approve(response)
    return response


def auth_time_of(flow: OIDCFlow, response: Any) -> int:
    tokens = flow.token(flow.code_from(response)).json()
    return verify_id_token(tokens["id_token"], flow.rp.client_id)["auth_time"]


@pytest.fixture
def approved(flow: OIDCFlow) -> OIDCFlow:
    """The resident already shares with the partner: no consent page in the way."""
    flow.get_code()
    return flow


REAUTH_CASES = [
    pytest.param({"prompt": "login"}, id="prompt=login"),
    pytest.param({"max_age": "60"}, id="max_age"),
    pytest.param({"max_age": "0"}, id="max_age=0"),
    pytest.param({"prompt": "login consent"}, id="prompt=login+consent"),
]


@pytest.mark.parametrize("demand", REAUTH_CASES)
def test_skipping_the_sign_in_of_a_pushed_request_gives_no_code(
    approved: OIDCFlow, resident: Any, demand: dict[str, str]
) -> None:
    flow = approved
    age_the_session(flow.browser)
    first = open_pushed(flow, push(flow, **demand))
    assert is_sign_in_redirect(first)
    again = skip_sign_in(flow, first)
    assert is_sign_in_redirect(again), again.get("Location")
    # And once more: still no code, however often `next` is opened.
    assert is_sign_in_redirect(skip_sign_in(flow, again))


@pytest.mark.parametrize("demand", REAUTH_CASES)
def test_after_a_real_sign_in_the_pushed_request_proceeds_with_a_fresh_auth_time(
    approved: OIDCFlow, resident: Any, demand: dict[str, str]
) -> None:
    flow = approved
    old = age_the_session(flow.browser)
    asked_at = int(time.time())
    first = open_pushed(flow, push(flow, **demand))
    assert is_sign_in_redirect(first)
    response = sign_in_then_follow(flow, first, resident.email)
    assert auth_time_of(flow, response) >= asked_at > old


@pytest.mark.parametrize("demand", REAUTH_CASES)
def test_the_same_rule_for_requests_that_are_not_pushed(
    approved: OIDCFlow, resident: Any, demand: dict[str, str]
) -> None:
    flow = approved
    old = age_the_session(flow.browser)
    asked_at = int(time.time())
    first = flow.authorize(**demand)
    assert is_sign_in_redirect(first)
    assert is_sign_in_redirect(skip_sign_in(flow, first))
    response = sign_in_then_follow(flow, first, resident.email)
    assert auth_time_of(flow, response) >= asked_at > old


def test_a_recent_enough_sign_in_needs_no_new_one(approved: OIDCFlow) -> None:
    """max_age met by the current session: no sign-in at all (the rule only adds one when due)."""
    flow = approved
    age_the_session(flow.browser, seconds=10)
    response = open_pushed(flow, push(flow, max_age="600"))
    assert response.status_code in (302, 303) and "code=" in response["Location"]


def test_a_sign_in_before_the_request_does_not_count(approved: OIDCFlow, resident: Any) -> None:
    """Signing in elsewhere before the request, then opening `next`: still asked to sign in."""
    flow = approved
    age_the_session(flow.browser)
    first = open_pushed(flow, push(flow, prompt="login"))
    # The session's sign-in is an hour old; a new request for the same browser is asked again.
    second = open_pushed(flow, push(flow, prompt="login"))
    assert is_sign_in_redirect(first) and is_sign_in_redirect(second)
    response = sign_in_then_follow(flow, second, resident.email)
    assert "code=" in response["Location"]
