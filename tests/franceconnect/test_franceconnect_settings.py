"""FranceConnect configuration: off by default in production, refused when unsafe."""

from __future__ import annotations

from tests.test_settings import PRODUCTION, run_settings

SHOW = (
    "from django.conf import settings as s; "
    "print(s.FRANCECONNECT_ENABLED, s.FRANCECONNECT_ISSUER, s.FRANCECONNECT_ACR)"
)


def test_development_defaults_to_the_integration_platform():
    result = run_settings({"DJANGO_ENV": "development"}, SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "https://fcp-low.sbx.dev-franceconnect.fr/api/v2", "eidas1"]


def test_production_is_off_unless_configured():
    result = run_settings(PRODUCTION, SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False"


def test_production_requires_credentials_and_https():
    enabled = {**PRODUCTION, "FRANCECONNECT_ENABLED": "true"}
    assert "FRANCECONNECT_CLIENT_ID" in run_settings(enabled).stderr
    configured = {**enabled, "FRANCECONNECT_CLIENT_ID": "id", "FRANCECONNECT_CLIENT_SECRET": "secret"}
    assert (
        "https" in run_settings({**configured, "FRANCECONNECT_ISSUER": "http://fc.example.org/api/v2"}).stderr
    )
    assert run_settings(configured).returncode == 0


def test_unknown_acr_and_scopes_without_openid_are_refused():
    assert "FRANCECONNECT_ACR" in run_settings({"FRANCECONNECT_ACR": "eidas9"}).stderr
    assert "openid" in run_settings({"FRANCECONNECT_SCOPES": "email given_name"}).stderr
