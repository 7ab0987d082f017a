"""Issue 14: the sign-in form's page from its pre-rendered copy (identity/signin_page.py).

The page served from the copy must be exactly the page the template renders: same bytes
(but for the CSRF token, fresh at each request), same headers, same cookies, for every
language and every `next`, hostile ones included. The reference is the same view with the
copy switched off (`LoginView.prerendered_page`), rendering identity/login.html as before.
What the page does (the form, the limits, the accessibility scan in Chromium) is tested
where it was: tests/test_accounts_login.py, tests/security/, tests/browser/.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.middleware.csrf import _unmask_cipher_token
from django.test import Client, override_settings

from identity import signin_page
from identity.login_view import LoginView
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"')

NEXTS = [
    "",
    "/",
    "/compte/",
    "/authorize?client_id=a&redirect_uri=https%3A%2F%2Frp.example%2Fcb&state=x\"<y>'&nonce=é",
    "/o/authorize/?a=1&b=%3Cscript%3E&c=cumSigninCsrfMarker&d=cumSigninNext<marker>",
    "https://evil.example/",  # not allowed: the page leads nowhere but the default
    "//evil.example/path",
]


def _get(client: Client, path: str) -> Any:
    return client.get(path, HTTP_HOST="testserver")


def _fetch(
    path: str, *, prerendered: bool, language: str | None, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, list[str]]:
    monkeypatch.setattr(LoginView, "prerendered_page", prerendered)
    client = Client()
    if language:
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = _get(client, path)
    monkeypatch.undo()
    return response, _TOKEN.findall(response.content.decode())


def _headers(response: Any) -> list[tuple[str, str]]:
    # Per answer: the request id, and `Expires` (never_cache: the time of the answer).
    assert "Expires" in response.headers
    return sorted(
        (name, value) for name, value in response.headers.items() if name not in ("X-Request-ID", "Expires")
    )


def _same_page(path: str, language: str | None, monkeypatch: pytest.MonkeyPatch) -> Any:
    signin_page._forget()
    reference, reference_tokens = _fetch(path, prerendered=False, language=language, monkeypatch=monkeypatch)
    # Twice: the first request renders the copy, the second is served from it.
    for _ in range(2):
        fast, fast_tokens = _fetch(path, prerendered=True, language=language, monkeypatch=monkeypatch)
        assert fast.status_code == reference.status_code == 200
        assert len(fast_tokens) == len(reference_tokens) >= 1
        # One token for every form of the page, as the template's: all the same secret,
        # the one of the CSRF cookie set by this answer.
        cookie_secret = fast.cookies[settings.CSRF_COOKIE_NAME].value
        assert {_unmask_cipher_token(token) for token in fast_tokens} == {cookie_secret}
        assert len(set(fast_tokens)) == 1
        normalised = _TOKEN.sub("TOKEN", fast.content.decode())
        assert normalised == _TOKEN.sub("TOKEN", reference.content.decode())
        assert _headers(fast) == _headers(reference)
        assert sorted(fast.cookies) == sorted(reference.cookies)
        for name in fast.cookies:
            fast_cookie, reference_cookie = fast.cookies[name], reference.cookies[name]
            assert {k: fast_cookie[k] for k in fast_cookie if k != "expires"} == {
                k: reference_cookie[k] for k in reference_cookie if k != "expires"
            }
    return fast


@pytest.mark.parametrize("next_url", NEXTS)
@pytest.mark.parametrize("language", [None, "fr", "en"])
def test_the_copy_is_the_rendered_page(next_url: str, language: str | None, monkeypatch: Any) -> None:
    path = "/connexion/" + (f"?{urlencode({'next': next_url})}" if next_url else "")
    page = _same_page(path, language, monkeypatch).content.decode()
    if next_url.startswith("/") and not next_url.startswith("//"):
        # The values are in the page, escaped as the template escapes them.
        assert 'name="next" value="' in page
        assert "cumSignin" not in page.replace("cumSigninCsrfMarker", "").replace(
            "cumSigninNext&lt;marker&gt;", ""
        ).replace("cumSigninNext%3Cmarker%3E", "")
    else:
        assert 'name="next"' not in page.split('class="language"')[1].split("</form>")[1]
    if language == "en":
        assert '<html lang="en">' in page and "Sign in" in page


def test_a_value_that_looks_like_a_marker_is_never_replaced(monkeypatch: Any) -> None:
    next_url = "/x?cumSigninCsrfMarker=cumSigninFullPathMarker&cumSigninRegisterUrlMarker"
    page = _same_page("/connexion/?" + urlencode({"next": next_url}), None, monkeypatch).content.decode()
    assert 'value="/x?cumSigninCsrfMarker=cumSigninFullPathMarker&amp;cumSigninRegisterUrlMarker"' in page


def test_other_query_parameters_only_change_the_language_switchers_path(monkeypatch: Any) -> None:
    _same_page("/connexion/?next=/compte/&utm=%22%3E%3Cb%3E", "en", monkeypatch)


def test_the_page_is_kept_per_language(monkeypatch: Any) -> None:
    signin_page._forget()
    french, _ = _fetch("/connexion/", prerendered=True, language="fr", monkeypatch=monkeypatch)
    english, _ = _fetch("/connexion/", prerendered=True, language="en", monkeypatch=monkeypatch)
    assert 'lang="fr"' in french.content.decode() and "Se connecter" in french.content.decode()
    assert 'lang="en"' in english.content.decode() and "Sign in" in english.content.decode()
    assert sorted(signin_page._pages) == [("en", False), ("fr", False)]


def test_a_setting_change_drops_the_copies(monkeypatch: Any) -> None:
    _fetch("/connexion/", prerendered=True, language=None, monkeypatch=monkeypatch)
    assert signin_page._pages
    with override_settings(FRANCECONNECT_ENABLED=not settings.FRANCECONNECT_ENABLED):
        assert not signin_page._pages
        _same_page("/connexion/?next=/", None, monkeypatch)
    assert not signin_page._pages


@override_settings(DEBUG=True)
def test_no_copy_is_kept_with_debug_on(monkeypatch: Any) -> None:
    signin_page._forget()
    _fetch("/connexion/", prerendered=True, language=None, monkeypatch=monkeypatch)
    assert not signin_page._pages


def test_a_waiting_message_is_shown_by_the_full_page(signed_in: Client) -> None:
    # Signed out, the browser opens the sign-in page before any other: the message queued
    # by the sign-out is waiting. The copy has no room for it: the page is rendered, shows
    # it once, and the next visit is served from the copy.
    signin_page._forget()
    assert signed_in.post("/deconnexion/").status_code == 302
    first = signed_in.get("/connexion/").content.decode()
    assert "Déconnexion effectuée. À bientôt !" in first
    assert not signin_page._pages
    second = signed_in.get("/connexion/").content.decode()
    assert "Déconnexion effectuée" not in second
    assert signin_page._pages


def test_a_login_hint_is_rendered_in_full(client: Client) -> None:
    signin_page._forget()
    page = client.get("/connexion/?login_hint=alice%40example.org").content.decode()
    assert 'value="alice@example.org"' in page
    assert not signin_page._pages


def test_a_signed_in_visitor_gets_the_full_page(signed_in: Client) -> None:
    signin_page._forget()
    page = signed_in.get("/connexion/").content.decode()
    assert "Se déconnecter" in page
    assert not signin_page._pages


def test_the_copy_s_token_signs_in(client: Client, resident: Any) -> None:
    signin_page._forget()
    client.get("/connexion/")  # renders the copy
    client.cookies.clear()
    page = client.get("/connexion/?next=/compte/")
    token = _TOKEN.search(page.content.decode())
    assert token is not None
    client_enforcing = Client(enforce_csrf_checks=True)
    client_enforcing.cookies = client.cookies
    answer = client_enforcing.post(
        "/connexion/",
        {
            "username": resident.email,
            "password": PASSWORD,
            "csrfmiddlewaretoken": token.group(1),
            "next": "/compte/",
        },
    )
    assert answer.status_code == 302 and answer["Location"] == "/compte/"
    # And a forged token is still refused.
    client_enforcing.cookies.pop(settings.SESSION_COOKIE_NAME, None)
    page = client_enforcing.get("/connexion/")
    refused = client_enforcing.post(
        "/connexion/",
        {"username": resident.email, "password": PASSWORD, "csrfmiddlewaretoken": "x" * 64},
    )
    assert refused.status_code == 403
