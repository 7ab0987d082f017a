"""The protocol endpoints skip the browser-only middleware (config/middleware.py), and only them."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.test import Client
from django.urls import resolve
from django.utils.functional import SimpleLazyObject

from config.middleware import PROTOCOL_PATHS, OTPMiddleware, is_protocol_path

pytestmark = pytest.mark.django_db


def test_every_protocol_path_is_a_real_route():
    for path in PROTOCOL_PATHS:
        assert resolve(path).url_name, path


@pytest.mark.parametrize("path", ["/token/", "/tokens", "/userinfo/x", "/connexion/", "/authorize"])
def test_other_paths_are_not_protocol_paths(path):
    assert not is_protocol_path(path)


def test_protocol_endpoint_sets_no_cookie_and_varies_on_nothing_browser_specific(client: Client):
    response = client.get("/.well-known/openid-configuration", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert not response.cookies
    vary = response.get("Vary", "")
    assert "Cookie" not in vary
    assert "Accept-Language" not in vary
    assert "Content-Language" not in response


def test_protocol_endpoint_keeps_the_security_headers(client: Client):
    response = client.get("/jwks.json")
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"


def test_protocol_endpoint_still_validates_the_host(client: Client):
    response = client.get("/.well-known/openid-configuration", HTTP_HOST="evil.example")
    assert response.status_code == 400


def test_protocol_endpoint_ignores_a_session_cookie(client: Client, resident):
    client.force_login(resident)
    response = client.post("/token", {"grant_type": "client_credentials"})
    # Client authentication is required whatever the browser session says.
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_browser_pages_still_get_sessions_language_and_csrf(client: Client):
    response = client.get("/connexion/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert settings.CSRF_COOKIE_NAME in response.cookies
    assert response["Content-Language"] == "en"
    assert "Cookie" in response.get("Vary", "")


@pytest.mark.parametrize(
    ("path", "wrapped"), [("/userinfo", False), ("/introspect", False), ("/compte/", True)]
)
def test_second_factor_middleware_runs_on_browser_pages_only(rf, path, wrapped):
    seen = {}

    def view(request):
        seen["user"] = request.user
        return HttpResponse()

    request = rf.get(path)
    request.user = AnonymousUser()
    OTPMiddleware(view)(request)
    assert isinstance(seen["user"], SimpleLazyObject) is wrapped
    assert "config.middleware.OTPMiddleware" in settings.MIDDLEWARE
    assert "django_otp.middleware.OTPMiddleware" not in settings.MIDDLEWARE
