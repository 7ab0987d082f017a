"""Partners' apps on the resident's devices.

- Native apps (RFC 8252): private-use URI schemes in reverse-domain form (§7.1), claimed https
  URIs (§7.2) and loopback IP redirects registered without a port, any port accepted at
  request time (§7.3), in production too; the refusals (a scheme that is not a reversed
  domain, an authority after the scheme, `localhost`, a port on a loopback redirect in
  production); the consent screen says the app is on the resident's device.
- Single-page apps ("OAuth 2.0 for Browser-Based Applications"): CORS on the token, userinfo
  and revocation endpoints for the origins registered per client (identity/oidc/cors.py),
  never on introspection; registering origins; the idle lifetime of public clients' refresh
  tokens (identity/oidc/refresh_policy.py).

The same flows in a real Chromium, with a real single-page app library and a real loopback
listener: tests/browser/test_spa_and_native.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client as BrowserClient
from oauth2_provider.models import get_application_model, get_refresh_token_model

from identity.oidc.client_uris import ClientConfigError, redirect_uri_matches, validate_redirect_uri
from identity.oidc.clients import client_register
from tests.conftest import OIDCFlow
from tests.oidc.conftest import userinfo

APP_SCHEME_URI = "fr.nantesmetropole.app:/callback"
LOOPBACK_V4 = "http://127.0.0.1/callback"
LOOPBACK_V6 = "http://[::1]/callback"
SPA_ORIGIN = "https://appli.example.org"
OTHER_ORIGIN = "https://autre.example.org"


@pytest.fixture
def production(settings: Any) -> None:
    """What production allows: no http redirect URIs beyond RFC 8252's loopback ones."""
    settings.ALLOW_HTTP_LOOPBACK_REDIRECTS = False
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ALLOWED_REDIRECT_URI_SCHEMES": ["https"]}


# --- registration: what is accepted, what is refused -------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        APP_SCHEME_URI,
        "fr.nantesmetropole.app:/oauth2/redirect?x=1",
        "com.example-partner.mobile:/cb",
        LOOPBACK_V4,
        LOOPBACK_V6,
        "http://127.0.0.1/",
        "https://appli.example.org/auth/callback",  # a claimed https URI (§7.2)
    ],
)
def test_native_redirect_uris_are_accepted_in_production(production: None, db: Any, uri: str) -> None:
    assert validate_redirect_uri(uri) == uri
    client = get_application_model()(
        name="Appli",
        client_type="public",
        authorization_grant_type="authorization-code",
        grant_types="authorization_code",
        allowed_scopes="openid",
        redirect_uris=uri,
        token_endpoint_auth_method="none",
        algorithm="RS256",
    )
    client.clean()  # django-oauth-toolkit's checks and ours


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("myapp:/callback", "reversed"),  # not a reverse domain
        ("Fr.Nantesmetropole.App:/callback", "lower"),
        ("fr.nantesmetropole.app://callback", "one slash"),  # an authority: ambiguous
        ("fr.nantesmetropole.app:callback", "one slash"),
        ("javascript:alert(1)", "reversed"),
        ("data:text/html,x", "reversed"),
        ("fr.nantesmetropole.app:/callback#x", "fragment"),
        ("fr.nantesmetropole.app:/call back", "spaces"),
        ("http://localhost/callback", "not localhost"),  # RFC 8252 §8.3: the IP literal
        ("http://localhost:8080/callback", "loopback"),  # development only
        ("http://127.0.0.1:8080/callback", "loopback"),  # a port: development only
        ("http://127.0.0.2/callback", "https"),
        ("http://[::1]:80/callback", "loopback"),
        ("http://app.example.org/callback", "https"),
    ],
)
def test_refused_redirect_uris(production: None, uri: str, expected: str) -> None:
    with pytest.raises(ClientConfigError) as excinfo:
        validate_redirect_uri(uri)
    assert expected in str(excinfo.value)


def test_refusals_reach_the_service_and_the_model(production: None, db: Any) -> None:
    with pytest.raises(ClientConfigError) as excinfo:
        client_register(name="Appli", redirect_uris=["myapp:/callback"], grant_types=["authorization_code"])
    assert excinfo.value.field == "redirect_uris"
    client = get_application_model()(
        name="Appli",
        client_type="public",
        authorization_grant_type="authorization-code",
        grant_types="authorization_code",
        allowed_scopes="openid",
        redirect_uris="http://localhost/callback",
        token_endpoint_auth_method="none",
        algorithm="RS256",
    )
    with pytest.raises(ValidationError) as model_error:
        client.clean()
    assert "not localhost" in " ".join(model_error.value.message_dict["redirect_uris"])


@pytest.mark.parametrize(
    ("requested", "matches"),
    [
        ("http://127.0.0.1:51234/callback", True),
        ("http://127.0.0.1:1/callback", True),
        ("http://127.0.0.1/callback", True),
        ("http://127.0.0.1:51234/callback/", False),
        ("http://127.0.0.1:51234/callback?x=1", False),
        ("http://127.0.0.1:51234/Callback", False),
        ("https://127.0.0.1:51234/callback", False),
        ("http://[::1]:51234/callback", False),  # the other address family was not registered
        ("http://localhost:51234/callback", False),
        ("http://127.0.0.1:51234@evil.example/callback", False),
        ("http://evil.example@127.0.0.1:51234/callback", False),
        ("http://127.0.0.1:51234/callback#x", False),
        ("http://127.0.0.1:notaport/callback", False),
    ],
)
def test_loopback_redirect_any_port_rest_exact(requested: str, matches: bool) -> None:
    assert redirect_uri_matches(LOOPBACK_V4, requested) is matches


def test_ipv6_loopback_and_other_uris_are_exact() -> None:
    assert redirect_uri_matches(LOOPBACK_V6, "http://[::1]:40000/callback")
    assert not redirect_uri_matches(LOOPBACK_V6, "http://127.0.0.1:40000/callback")
    # Private-use and https redirect URIs: the exact string, nothing else (RFC 9700 §4.1.3).
    assert redirect_uri_matches(APP_SCHEME_URI, APP_SCHEME_URI)
    assert not redirect_uri_matches(APP_SCHEME_URI, APP_SCHEME_URI + "/")
    assert not redirect_uri_matches(APP_SCHEME_URI, "FR.nantesmetropole.app:/callback")
    assert not redirect_uri_matches("https://rp.example.org/cb", "https://rp.example.org:443/cb")
    # A registered port is not a native loopback redirect: exact.
    assert not redirect_uri_matches("http://127.0.0.1:8000/cb", "http://127.0.0.1:8001/cb")


def test_loopback_redirects_never_make_a_sector(production: None, db: Any, signing_keys: Any) -> None:
    """Every app on every device shares 127.0.0.1: two apps must not share pairwise subjects."""
    one, _ = client_register(
        name="Appli A", redirect_uris=[LOOPBACK_V4], grant_types=["authorization_code"], public=True
    )
    two, _ = client_register(
        name="Appli B",
        redirect_uris=[LOOPBACK_V4, LOOPBACK_V6],
        grant_types=["authorization_code"],
        public=True,
    )
    assert one.subject_sector == f"client:{one.client_id}"
    assert two.subject_sector == f"client:{two.client_id}"


# --- register_client --allowed-origin ---------------------------------------------------------


def test_register_client_with_native_redirects_and_origins(
    production: None, db: Any, signing_keys: Any
) -> None:
    out = _run(
        "register_client",
        "--name",
        "Appli Nantes",
        "--public",
        "--redirect-uri",
        APP_SCHEME_URI,
        "--redirect-uri",
        LOOPBACK_V4,
        "--allowed-origin",
        SPA_ORIGIN,
        "--allowed-origin",
        "https://www.appli.example.org:8443",
        "--json",
    )
    result = json.loads(out)
    assert result["redirect_uris"] == [APP_SCHEME_URI, LOOPBACK_V4]
    assert result["allowed_origins"] == [SPA_ORIGIN, "https://www.appli.example.org:8443"]
    client = get_application_model().objects.get(client_id=result["client_id"])
    assert client.allowed_origins == f"{SPA_ORIGIN} https://www.appli.example.org:8443"


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://appli.example.org/", "must be an origin"),
        ("https://appli.example.org/app", "must be an origin"),
        ("https://Appli.example.org", "must be an origin"),
        ("*", "must be an origin"),
        ("null", "must be an origin"),
        ("http://appli.example.org", "https"),
        ("http://127.0.0.1:8080", "https"),  # production: loopback http only in development
    ],
)
def test_register_client_refuses_bad_origins(production: None, db: Any, origin: str, expected: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        _run(
            "register_client",
            "--name",
            "Appli",
            "--public",
            "--redirect-uri",
            "https://appli.example.org/cb",
            "--allowed-origin",
            origin,
        )
    assert expected in str(excinfo.value)
    assert not get_application_model().objects.filter(name="Appli").exists()


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- a native app's flow (Django's test client; the real listener is in tests/browser/) -------


@pytest.fixture
def native_app(make_client: Any) -> Any:
    return make_client(
        name="Appli Nantes Métropole",
        public=True,
        redirect_uris=[APP_SCHEME_URI, LOOPBACK_V4],
        grant_types=["authorization_code"],
    )


def _native_flow(signed_in: BrowserClient, app: Any, redirect_uri: str) -> tuple[Any, OIDCFlow]:
    flow = OIDCFlow(signed_in, app)
    response = flow.authorize(redirect_uri=redirect_uri)
    return response, flow


def test_private_use_scheme_flow_and_consent_screen(
    production: None, signed_in: BrowserClient, native_app: Any
):
    response, flow = _native_flow(signed_in, native_app, APP_SCHEME_URI)
    assert response.status_code == 200 and "pending_id" in response.context
    page = response.content.decode()
    assert "Appli Nantes Métropole" in page
    assert "est une application installée sur votre appareil" in page
    redirect = flow.approve(response)
    location = redirect["Location"]
    assert location.startswith(APP_SCHEME_URI + "?")
    code = parse_qs(urlsplit(location).query)["code"][0]
    tokens = _exchange(native_app, code, APP_SCHEME_URI, flow.verifier)
    assert tokens.status_code == 200, tokens.content
    assert userinfo(tokens.json()["access_token"]).status_code == 200


def test_consent_screen_of_a_web_client_says_nothing_of_a_device(signed_in: BrowserClient, rp: Any):
    response = OIDCFlow(signed_in, rp).authorize()
    assert "pending_id" in response.context
    assert "installée sur votre appareil" not in response.content.decode()


def test_consent_screen_in_english(production: None, signed_in: BrowserClient, native_app: Any):
    signed_in.cookies["language"] = "en"
    response, _ = _native_flow(signed_in, native_app, APP_SCHEME_URI)
    assert "is an app installed on your device" in response.content.decode()


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "fr.nantesmetropole.app:/callback/",
        "fr.nantesmetropole.app:/other",
        "fr.nantesmetropole.appx:/callback",
        "http://127.0.0.1:5000/other",
        "http://localhost:5000/callback",
        "http://[::1]:5000/callback",
    ],
)
def test_unregistered_native_redirects_never_receive_a_code(
    production: None, signed_in: BrowserClient, native_app: Any, redirect_uri: str
):
    response, _ = _native_flow(signed_in, native_app, redirect_uri)
    assert response.status_code == 400
    assert "Location" not in response


def test_loopback_any_port_and_the_code_is_bound_to_that_port(
    production: None, signed_in: BrowserClient, native_app: Any
):
    response, flow = _native_flow(signed_in, native_app, "http://127.0.0.1:51234/callback")
    redirect = flow.approve(response)
    assert redirect["Location"].startswith("http://127.0.0.1:51234/callback?")
    code = parse_qs(urlsplit(redirect["Location"]).query)["code"][0]
    # The token request names the redirect URI of the authorization request, port included.
    wrong = _exchange(native_app, code, "http://127.0.0.1:51235/callback", flow.verifier)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


def _exchange(app: Any, code: str, redirect_uri: str, verifier: str, **headers: str) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": app.client_id,
    }
    return BrowserClient().post("/token", data, **headers)


# --- CORS -----------------------------------------------------------------------------------------


@pytest.fixture
def spa(make_client: Any) -> Any:
    registered = make_client(
        name="Appli web",
        public=True,
        redirect_uris=["https://appli.example.org/callback"],
        grant_types=["authorization_code"],
        allowed_origins=[SPA_ORIGIN],
    )
    return registered


@pytest.fixture
def other_spa(make_client: Any) -> Any:
    return make_client(
        name="Autre appli",
        public=True,
        redirect_uris=["https://autre.example.org/callback"],
        grant_types=["authorization_code"],
        allowed_origins=[OTHER_ORIGIN],
    )


def _preflight(path: str, origin: str, method: str = "POST") -> Any:
    return BrowserClient().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, dpop",
    )


def _spa_code(signed_in: BrowserClient, app: Any) -> tuple[str, str]:
    flow = OIDCFlow(signed_in, app)
    response = flow.authorize(redirect_uri="https://appli.example.org/callback")
    redirect = flow.approve(response)
    return parse_qs(urlsplit(redirect["Location"]).query)["code"][0], flow.verifier


def _assert_no_wildcard_no_credentials(response: Any) -> None:
    assert response.get("Access-Control-Allow-Origin") != "*"
    assert "Access-Control-Allow-Credentials" not in response
    assert "Origin" in [part.strip() for part in response.get("Vary", "").split(",")]


@pytest.mark.parametrize(
    ("path", "methods"), [("/token", "POST"), ("/userinfo", "GET, POST"), ("/revoke", "POST")]
)
def test_preflight_for_a_registered_origin(spa: Any, path: str, methods: str) -> None:
    response = _preflight(path, SPA_ORIGIN)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SPA_ORIGIN
    assert response["Access-Control-Allow-Methods"] == f"{methods}, OPTIONS"
    assert {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")} >= {
        "Authorization",
        "Content-Type",
        "DPoP",
    }
    assert int(response["Access-Control-Max-Age"]) > 0
    _assert_no_wildcard_no_credentials(response)


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://appli.example.org.evil.example"])
def test_preflight_for_an_unregistered_origin_has_no_cors_headers(spa: Any, origin: str) -> None:
    response = _preflight("/token", origin)
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    _assert_no_wildcard_no_credentials(response)


def test_introspection_has_no_cors(spa: Any) -> None:
    response = _preflight("/introspect", SPA_ORIGIN)
    assert "Access-Control-Allow-Origin" not in response
    post = BrowserClient().post("/introspect", {"token": "x"}, HTTP_ORIGIN=SPA_ORIGIN)
    assert "Access-Control-Allow-Origin" not in post


def test_token_userinfo_refresh_revoke_from_the_registered_origin(signed_in: BrowserClient, spa: Any) -> None:
    code, verifier = _spa_code(signed_in, spa)
    response = _exchange(spa, code, "https://appli.example.org/callback", verifier, HTTP_ORIGIN=SPA_ORIGIN)
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == SPA_ORIGIN
    assert "DPoP-Nonce" in response["Access-Control-Expose-Headers"]
    _assert_no_wildcard_no_credentials(response)
    tokens = response.json()

    info = BrowserClient().get(
        "/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}", HTTP_ORIGIN=SPA_ORIGIN
    )
    assert info.status_code == 200
    assert info["Access-Control-Allow-Origin"] == SPA_ORIGIN
    _assert_no_wildcard_no_credentials(info)

    refreshed = BrowserClient().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": spa.client_id},
        HTTP_ORIGIN=SPA_ORIGIN,
    )
    assert refreshed.status_code == 200, refreshed.content
    assert refreshed["Access-Control-Allow-Origin"] == SPA_ORIGIN

    revoked = BrowserClient().post(
        "/revoke",
        {"token": refreshed.json()["refresh_token"], "client_id": spa.client_id},
        HTTP_ORIGIN=SPA_ORIGIN,
    )
    assert revoked.status_code == 200
    assert revoked["Access-Control-Allow-Origin"] == SPA_ORIGIN


def test_another_clients_origin_cannot_redeem_or_read(
    signed_in: BrowserClient, spa: Any, other_spa: Any
) -> None:
    """A page of another partner (its origin registered, but for its own client) holding the
    app's code: refused before anything is issued, and the code still works for the app."""
    code, verifier = _spa_code(signed_in, spa)
    foreign = _exchange(spa, code, "https://appli.example.org/callback", verifier, HTTP_ORIGIN=OTHER_ORIGIN)
    assert foreign.status_code == 400
    assert foreign.json()["error"] == "invalid_request"
    assert "access_token" not in foreign.json()
    # An error: readable by a registered origin (no token in it).
    assert foreign["Access-Control-Allow-Origin"] == OTHER_ORIGIN
    response = _exchange(spa, code, "https://appli.example.org/callback", verifier, HTTP_ORIGIN=SPA_ORIGIN)
    assert response.status_code == 200
    access_token = response.json()["access_token"]
    # Userinfo answers (a bearer token works anywhere) but not to the other partner's page.
    info = BrowserClient().get(
        "/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}", HTTP_ORIGIN=OTHER_ORIGIN
    )
    assert info.status_code == 200
    assert "Access-Control-Allow-Origin" not in info
    _assert_no_wildcard_no_credentials(info)


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_unregistered_origin_redeems_nothing(signed_in: BrowserClient, spa: Any, origin: str) -> None:
    code, verifier = _spa_code(signed_in, spa)
    response = _exchange(spa, code, "https://appli.example.org/callback", verifier, HTTP_ORIGIN=origin)
    assert response.status_code == 400
    assert "Access-Control-Allow-Origin" not in response
    assert _exchange(spa, code, "https://appli.example.org/callback", verifier).status_code == 200


def test_errors_are_readable_by_registered_origins(spa: Any) -> None:
    bad_code = _exchange(spa, "nope", "https://appli.example.org/callback", "v" * 43, HTTP_ORIGIN=SPA_ORIGIN)
    assert bad_code.status_code == 400 and bad_code.json()["error"] == "invalid_grant"
    assert bad_code["Access-Control-Allow-Origin"] == SPA_ORIGIN
    bad_token = BrowserClient().get("/userinfo", HTTP_AUTHORIZATION="Bearer nope", HTTP_ORIGIN=SPA_ORIGIN)
    assert bad_token.status_code == 401
    assert bad_token["Access-Control-Allow-Origin"] == SPA_ORIGIN
    assert "WWW-Authenticate" in bad_token["Access-Control-Expose-Headers"]
    unknown = BrowserClient().get(
        "/userinfo", HTTP_AUTHORIZATION="Bearer nope", HTTP_ORIGIN="https://evil.example"
    )
    assert "Access-Control-Allow-Origin" not in unknown


def test_back_ends_without_origin_are_unchanged(signed_in: BrowserClient, rp: Any) -> None:
    flow = OIDCFlow(signed_in, rp)
    response = flow.token(flow.get_code())
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Origin" in response["Vary"]


# --- public clients' refresh tokens: idle lifetime --------------------------------------------


def _age_refresh_token(raw: str, seconds: int) -> None:
    model = get_refresh_token_model()
    row = model.objects.get(token_checksum=hashlib.sha256(raw.encode()).hexdigest(), revoked__isnull=True)
    model.objects.filter(pk=row.pk).update(created=row.created - timedelta(seconds=seconds))


def _refresh(app: Any, refresh_token: str, auth: str | None = None) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if auth is None:
        data["client_id"] = app.client_id
        return BrowserClient().post("/token", data)
    return BrowserClient().post("/token", data, HTTP_AUTHORIZATION=auth)


def test_public_client_refresh_token_expires_when_idle(
    settings: Any, signed_in: BrowserClient, spa: Any
) -> None:
    settings.OIDC_PUBLIC_CLIENT_REFRESH_IDLE_SECONDS = 3600
    code, verifier = _spa_code(signed_in, spa)
    tokens = _exchange(spa, code, "https://appli.example.org/callback", verifier).json()
    _age_refresh_token(tokens["refresh_token"], 3500)
    fresh = _refresh(spa, tokens["refresh_token"])
    assert fresh.status_code == 200, fresh.content  # used within the idle lifetime: rotated
    new = fresh.json()["refresh_token"]
    _age_refresh_token(new, 3601)
    idle = _refresh(spa, new)
    assert idle.status_code == 400
    assert idle.json()["error"] == "invalid_grant"
    assert "3600 seconds" in idle.json()["error_description"]


def test_confidential_client_refresh_token_has_no_idle_limit(
    settings: Any, signed_in: BrowserClient, rp: Any
) -> None:
    settings.OIDC_PUBLIC_CLIENT_REFRESH_IDLE_SECONDS = 3600
    flow = OIDCFlow(signed_in, rp)
    tokens = flow.token(flow.get_code()).json()
    _age_refresh_token(tokens["refresh_token"], 3601)
    assert _refresh(rp, tokens["refresh_token"], auth=rp.basic_auth()).status_code == 200
