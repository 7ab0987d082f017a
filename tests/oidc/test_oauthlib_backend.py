"""identity/oidc/oauthlib_core.py: oauthlib receives only the headers it reads."""

from __future__ import annotations

from django.test import RequestFactory

from identity.oidc.oauthlib_core import OAuthLibCore


def test_only_the_headers_oauthlib_reads_are_passed_on():
    request = RequestFactory().post(
        "/token",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION="Basic abc",
        HTTP_ORIGIN="https://rp.example.org",
        HTTP_COOKIE="sessionid=secret",
        HTTP_USER_AGENT="curl",
        HTTP_X_FORWARDED_PROTO="https",
    )
    headers = OAuthLibCore().extract_headers(request)
    assert headers["Authorization"] == headers["HTTP_AUTHORIZATION"] == "Basic abc"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Origin"] == "https://rp.example.org"
    # Cookies and other request metadata never reach oauthlib.
    assert "HTTP_COOKIE" not in headers
    assert "HTTP_USER_AGENT" not in headers
    assert "wsgi.input" not in headers
    assert set(headers) <= {
        "HTTP_AUTHORIZATION",
        "Authorization",
        "CONTENT_TYPE",
        "Content-Type",
        "HTTP_ORIGIN",
        "Origin",
        "HTTP_HOST",
        "REMOTE_ADDR",
        "X_DJANGO_OAUTH_TOOLKIT_SECURE",
    }


def test_secure_requests_are_marked(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    request = RequestFactory().post("/token", HTTP_X_FORWARDED_PROTO="https")
    assert OAuthLibCore().extract_headers(request)["X_DJANGO_OAUTH_TOOLKIT_SECURE"] == "1"
    plain = RequestFactory().post("/token")
    assert "X_DJANGO_OAUTH_TOOLKIT_SECURE" not in OAuthLibCore().extract_headers(plain)
