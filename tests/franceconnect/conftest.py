"""A FranceConnect stand-in on a real local port, and a browser that goes through it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

import pytest
from django.conf import settings as django_settings

from tests.conftest import clear_test_caches
from tests.franceconnect.fake_fc import FakeFranceConnect

CALLBACK_PATH = "/franceconnect/retour/"
LOGOUT_RETURN_PATH = "/franceconnect/deconnexion/retour/"


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http_get(url: str) -> tuple[int, str, bytes]:
    """A real HTTP GET (no redirect following): status, Location header, body."""
    opener = build_opener(_NoRedirect)
    try:
        with opener.open(Request(url), timeout=5) as response:
            return response.status, response.headers.get("Location", ""), response.read()
    except HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), exc.read()


@pytest.fixture
def fake_fc(settings: Any) -> Iterator[FakeFranceConnect]:
    fake = FakeFranceConnect(
        redirect_uris=(django_settings.ISSUER + CALLBACK_PATH,),
        post_logout_redirect_uris=(django_settings.ISSUER + LOGOUT_RETURN_PATH,),
    )
    settings.FRANCECONNECT_ENABLED = True
    settings.FRANCECONNECT_ISSUER = fake.issuer
    settings.FRANCECONNECT_CLIENT_ID = fake.client_id
    settings.FRANCECONNECT_CLIENT_SECRET = fake.client_secret
    settings.FRANCECONNECT_ACR = "eidas1"
    # Generous: the stand-in answers in milliseconds, but a loaded CI machine must not turn
    # that into a timeout (the tests of a slow or unreachable upstream set their own).
    settings.FRANCECONNECT_TIMEOUT = 10
    clear_test_caches()
    yield fake
    fake.close()
    clear_test_caches()


class FranceConnectBrowser:
    """Django's test client for our pages, real HTTP for the stand-in's."""

    def __init__(self, client: Any, fake: FakeFranceConnect) -> None:
        self.client = client
        self.fake = fake

    def start(self, next_url: str = "") -> Any:
        data = {"next": next_url} if next_url else {}
        return self.client.post("/franceconnect/connexion/", data)

    def upstream(self, response: Any) -> str:
        """Follow our redirect to the stand-in's authorize endpoint; return where it sends us back."""
        assert response.status_code == 302, response.status_code
        location = response["Location"]
        assert location.startswith(self.fake.issuer + "/authorize?"), location
        status, back, _body = http_get(location)
        assert status == 302, (status, _body[:300])
        return back

    def return_to_us(self, url: str) -> Any:
        parts = urlsplit(url)
        assert parts.path == CALLBACK_PATH, url
        return self.client.get(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()})

    def sign_in(self, next_url: str = "") -> Any:
        """The whole round trip: button, FranceConnect, callback. Returns our callback's answer."""
        return self.return_to_us(self.upstream(self.start(next_url)))


@pytest.fixture
def fc_browser(client: Any, fake_fc: FakeFranceConnect) -> FranceConnectBrowser:
    return FranceConnectBrowser(client, fake_fc)
