"""The relying-party libraries of docs/partners.md, run for real against our provider.

Our provider listens on a real socket (pytest-django's `live_server`). Each library is
configured with the very code of its example in docs/partners.md (the Python blocks are
executed as written, with only the issuer, client id and secret filled in; the Node script
tests/rp_node/rp.js makes the same openid-client calls). A resident signs in through our
real sign-in form over HTTP (`requests`, CSRF token included) and approves the consent
screen; then the library itself redeems the code at our token endpoint, verifies the ID
token with our JWKS (signature, nonce, and what else it checks) and calls userinfo.

The tests assert the claims the library hands to the partner, and that the library's
checks are in force with the documented configuration: a forged nonce or a tampered
ID token is refused by the library, not by these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.integrations.base_client.errors import MismatchingStateError
from django.conf import settings as django_settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import SuspiciousOperation
from django.test import RequestFactory
from django.urls import include, path, set_urlconf
from joserfc.errors import BadSignatureError, InvalidClaimError
from jwcrypto import jwk
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from identity.oidc.models import PushedAuthorizationRequest
from tests.conftest import PASSWORD
from tests.oidc.conftest import expected_sub
from tests.oidc.test_partner_docs import DOC_ISSUER, examples

pytestmark = pytest.mark.django_db(transaction=True)

RP_HOST = "service.example.org"
RP_ORIGIN = f"https://{RP_HOST}"
NODE_DIR = Path(__file__).resolve().parents[1] / "rp_node"
NODE_SCRIPT = NODE_DIR / "rp.js"

# The partner's URLconf for mozilla-django-oidc (its views under /oidc/, as its documentation
# and ours say). Used by the partner side only, in the test thread (set_urlconf); the
# provider on live_server keeps its own.
urlpatterns = [path("oidc/", include("mozilla_django_oidc.urls"))]


# --- the provider on a socket, a resident, and a browser that signs in over HTTP ---------------


@pytest.fixture
def provider(live_server: Any, settings: Any, signing_keys: Any) -> str:
    settings.ISSUER = live_server.url
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    # The partner's views run in this process too (RequestFactory): let its host in.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, RP_HOST]
    return live_server.url


@pytest.fixture
def resident(make_resident: Any) -> Any:
    return make_resident("camille.rp@example.org", given_name="Camille", family_name="Martin")


class _Forms(HTMLParser):
    """The forms of a page: method, action, and the value of every named field."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._form: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self._form = {
                "method": (values.get("method") or "get").lower(),
                "action": values.get("action") or "",
                "fields": {},
            }
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and values.get("name"):
            self._form["fields"][values["name"]] = values.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def sign_in_and_consent(
    provider: str, authorization_url: str, *, email: str, redirect_uri: str
) -> dict[str, Any]:
    """A resident's browser: follows the partner's authorization URL on our provider, fills in
    the sign-in form (with its CSRF token), approves the consent screen, and stops at the
    redirect to the partner's callback. Returns the callback URL and the pages seen."""
    assert authorization_url.startswith(provider + "/"), authorization_url
    browser = requests.Session()
    method, url, data = "GET", authorization_url, None
    pages: list[str] = []
    for _ in range(12):
        response = browser.request(method, url, data=data, allow_redirects=False, timeout=20)
        if response.is_redirect:
            location = urljoin(url, response.headers["Location"])
            if location.startswith(redirect_uri + "?"):
                return {"callback_url": location, "pages": pages}
            assert location.startswith(provider + "/"), location  # never elsewhere
            method, url, data = "GET", location, None
            continue
        assert response.status_code == 200, (url, response.status_code, response.text[:800])
        parser = _Forms()
        parser.feed(response.text)
        posts = [form for form in parser.forms if form["method"] == "post"]
        login = [form for form in posts if "password" in form["fields"]]
        consent = [form for form in posts if "pending" in form["fields"]]
        if login:
            form, page = login[0], "login"
            data = {**form["fields"], "username": email, "password": PASSWORD}
        elif consent:
            form, page = consent[0], "consent"
            data = {**form["fields"], "decision": "allow"}
        else:
            raise AssertionError(f"unexpected page at {url}: {response.text[:800]}")
        assert data.get("csrfmiddlewaretoken"), page
        pages.append(page)
        method, url = "POST", urljoin(response.url, form["action"] or response.url)
    raise AssertionError(f"no redirect to {redirect_uri} after {pages}")


def callback_query(callback_url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(callback_url).query).items()}


# --- the partner's side: Django views called as its server would ------------------------------


class PartnerSite:
    """The partner's Django site (same process, RequestFactory): runs its views behind the
    session middleware and keeps the resident's session cookie between requests."""

    def __init__(self) -> None:
        self.factory = RequestFactory()
        self.cookies: dict[str, str] = {}

    def get(self, view: Any, url: str) -> Any:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == RP_ORIGIN, url
        request = self.factory.get(
            parts.path + ("?" + parts.query if parts.query else ""), secure=True, HTTP_HOST=RP_HOST
        )
        request.COOKIES.update(self.cookies)
        response = SessionMiddleware(view)(request)
        self.cookies.update({name: morsel.value for name, morsel in response.cookies.items()})
        return response

    def session(self) -> Any:
        """The partner's session for this resident, as its next request would load it."""
        key = self.cookies[django_settings.SESSION_COOKIE_NAME]
        return import_module(django_settings.SESSION_ENGINE).SessionStore(key)


def docs_code(name: str, provider: str, client_id: str, secret: str | None = None) -> str:
    """The example block of docs/partners.md, with our live issuer and the client filled in."""
    code = examples()[name]
    replacements = {DOC_ISSUER: provider, "your-client-id": client_id}
    if secret is not None:
        replacements["from-your-secret-manager"] = secret
    for placeholder, value in replacements.items():
        assert placeholder in code, (name, placeholder)
        code = code.replace(placeholder, value)
    return code


def with_broken_signature(id_token: str) -> str:
    """The ID token as a man in the middle would alter it: same header and claims, and a
    signature that is no longer the provider's."""
    header, claims, signature = id_token.split(".")
    replacement = "AAAAAA" if signature[-6:] != "AAAAAA" else "BBBBBB"
    return f"{header}.{claims}.{signature[:-6]}{replacement}"


def assert_claims(claims: dict, userinfo: dict, *, provider: str, rp: Any, resident: Any, nonce: str) -> None:
    sub = expected_sub(rp, resident)
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert claims["iss"] == provider
    assert aud == [rp.client_id]
    assert claims["sub"] == sub
    assert claims["nonce"] == nonce
    assert claims["email"] == resident.email
    assert claims["acr"] == "eidas1" and claims["amr"] == ["pwd"]
    assert claims["sid"] and claims["auth_time"] <= claims["iat"] < claims["exp"]
    assert userinfo["sub"] == sub
    assert userinfo["email"] == resident.email and userinfo["email_verified"] is True
    assert userinfo["given_name"] == "Camille" and userinfo["family_name"] == "Martin"
    assert userinfo["name"] == "Camille Martin"


# --- Authlib (Django integration) ----------------------------------------------------------------

AUTHLIB_REDIRECT_URI = f"{RP_ORIGIN}/callback"


@pytest.fixture
def authlib_rp(make_client: Any) -> Any:
    return make_client(name="Médiathèques (Authlib)", redirect_uris=[AUTHLIB_REDIRECT_URI])


def run_authlib_example(provider: str, rp: Any) -> dict[str, Any]:
    code = docs_code("authlib", provider, rp.client_id, rp.secret)
    namespace: dict[str, Any] = {"__name__": "partner_views"}
    exec(compile(code, "docs/partners.md (Authlib)", "exec"), namespace)  # our own docs, as written
    return namespace


@pytest.mark.parametrize("tamper", [None, "nonce", "id_token_signature"])
def test_authlib_example_signs_a_resident_in(provider, authlib_rp, resident, tamper, monkeypatch):
    partner = PartnerSite()
    example = run_authlib_example(provider, authlib_rp)
    response = partner.get(example["login"], f"{RP_ORIGIN}/login")
    assert response.status_code == 302
    authorization_url = response["Location"]
    sent = callback_query(authorization_url)
    assert authorization_url.startswith(provider + "/authorize?")
    assert sent["client_id"] == authlib_rp.client_id and sent["redirect_uri"] == AUTHLIB_REDIRECT_URI
    assert sent["code_challenge_method"] == "S256" and sent["code_challenge"] and sent["nonce"]
    assert sent["scope"] == "openid profile email"

    browser = sign_in_and_consent(
        provider, authorization_url, email=resident.email, redirect_uri=AUTHLIB_REDIRECT_URI
    )
    assert browser["pages"] == ["login", "consent"]
    returned = callback_query(browser["callback_url"])
    assert returned["state"] == sent["state"] and returned["iss"] == provider

    compte = example["oauth"].compte
    if tamper == "nonce":
        # What the partner's session expects differs from what the provider signed: as if
        # the provider had put another nonce in the ID token.
        session = partner.session()
        key = f"_state_compte_{sent['state']}"
        assert session[key]["data"]["nonce"] == sent["nonce"]
        session[key]["data"]["nonce"] = "forged-" + sent["nonce"]
        session.save()
    elif tamper == "id_token_signature":
        fetch = compte.fetch_access_token

        def fetch_then_tamper(*args: Any, **kwargs: Any) -> Any:
            token = fetch(*args, **kwargs)
            token["id_token"] = with_broken_signature(token["id_token"])
            return token

        monkeypatch.setattr(compte, "fetch_access_token", fetch_then_tamper)

    if tamper is not None:
        expected = InvalidClaimError if tamper == "nonce" else BadSignatureError
        with pytest.raises(expected):
            partner.get(example["callback"], browser["callback_url"])
        return

    response = partner.get(example["callback"], browser["callback_url"])
    assert response.status_code == 302 and response["Location"] == "/"
    signed_in = partner.session()["resident"]
    assert_claims(
        signed_in["id_token"],
        signed_in["userinfo"],
        provider=provider,
        rp=authlib_rp,
        resident=resident,
        nonce=sent["nonce"],
    )
    # The state was used once: replaying the callback is refused by the library.
    with pytest.raises(MismatchingStateError):
        partner.get(example["callback"], browser["callback_url"])


# --- mozilla-django-oidc ---------------------------------------------------------------------------

MOZILLA_REDIRECT_URI = f"{RP_ORIGIN}/oidc/callback/"
MOZILLA_BACKEND = "mozilla_django_oidc.auth.OIDCAuthenticationBackend"


@pytest.fixture
def mozilla_rp(make_client: Any) -> Any:
    return make_client(name="Billetterie (mozilla-django-oidc)", redirect_uris=[MOZILLA_REDIRECT_URI])


@pytest.fixture
def mozilla_settings(provider: str, mozilla_rp: Any, settings: Any) -> Any:
    """The partner's settings: the docs block as written, plus the library's installation
    (its backend beside ours, since both sides share this process's settings)."""
    namespace: dict[str, Any] = {}
    code = docs_code("mozilla", provider, mozilla_rp.client_id, mozilla_rp.secret)
    exec(compile(code, "docs/partners.md (mozilla-django-oidc)", "exec"), namespace)
    documented = {name: value for name, value in namespace.items() if name.startswith("OIDC_")}
    assert documented["OIDC_OP_TOKEN_ENDPOINT"] == provider + "/token"
    for name, value in documented.items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, MOZILLA_BACKEND]
    # The partner's own pages after sign-in, told apart so that a failure cannot pass.
    settings.LOGIN_REDIRECT_URL = "/espace/"
    settings.LOGIN_REDIRECT_URL_FAILURE = "/connexion-impossible/"
    set_urlconf(__name__)
    yield documented
    set_urlconf(None)


def _recording(monkeypatch: pytest.MonkeyPatch, cls: Any, name: str, seen: list[Any]) -> None:
    original = getattr(cls, name)

    def record(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        seen.append(result)
        return result

    monkeypatch.setattr(cls, name, record)


@pytest.mark.parametrize("tamper", [None, "nonce", "id_token_signature"])
def test_mozilla_django_oidc_example_signs_a_resident_in(
    provider, mozilla_rp, mozilla_settings, resident, tamper, monkeypatch
):
    verified: list[Any] = []
    userinfos: list[Any] = []
    _recording(monkeypatch, OIDCAuthenticationBackend, "verify_token", verified)
    _recording(monkeypatch, OIDCAuthenticationBackend, "get_userinfo", userinfos)

    partner = PartnerSite()
    response = partner.get(OIDCAuthenticationRequestView.as_view(), f"{RP_ORIGIN}/oidc/authenticate/")
    assert response.status_code == 302
    authorization_url = response["Location"]
    sent = callback_query(authorization_url)
    assert authorization_url.startswith(provider + "/authorize?")
    assert sent["redirect_uri"] == MOZILLA_REDIRECT_URI and sent["scope"] == "openid profile email"
    assert sent["code_challenge_method"] == "S256" and sent["nonce"]
    assert sent["acr_values"] == "https://refeds.org/profile/mfa"

    browser = sign_in_and_consent(
        provider, authorization_url, email=resident.email, redirect_uri=MOZILLA_REDIRECT_URI
    )
    assert browser["pages"] == ["login", "consent"]

    if tamper == "nonce":
        # As if the provider had signed another nonce than the one of this sign-in.
        session = partner.session()
        assert session["oidc_states"][sent["state"]]["nonce"] == sent["nonce"]
        session["oidc_states"][sent["state"]]["nonce"] = "forged-" + sent["nonce"]
        session.save()
    elif tamper == "id_token_signature":
        get_token = OIDCAuthenticationBackend.get_token

        def get_token_then_tamper(self: Any, payload: Any) -> Any:
            token = get_token(self, payload)
            token["id_token"] = with_broken_signature(token["id_token"])
            return token

        monkeypatch.setattr(OIDCAuthenticationBackend, "get_token", get_token_then_tamper)

    callback = OIDCAuthenticationCallbackView.as_view()
    if tamper is not None:
        message = "Nonce verification failed" if tamper == "nonce" else "JWS token verification failed"
        with pytest.raises(SuspiciousOperation, match=message):
            partner.get(callback, browser["callback_url"])
        assert userinfos == []
        return

    response = partner.get(callback, browser["callback_url"])
    assert response.status_code == 302 and response["Location"] == "/espace/"
    session = partner.session()
    assert session["_auth_user_id"] == str(resident.pk)
    assert session["_auth_user_backend"] == MOZILLA_BACKEND
    [claims] = verified
    [userinfo] = userinfos
    assert_claims(claims, userinfo, provider=provider, rp=mozilla_rp, resident=resident, nonce=sent["nonce"])
    # The state was used once: replaying the callback is refused by the library.
    with pytest.raises(SuspiciousOperation, match="state not found"):
        partner.get(callback, browser["callback_url"])


# --- openid-client for Node ---------------------------------------------------------------------

NODE_REDIRECT_URI = f"{RP_ORIGIN}/callback"


def node_or_skip() -> str:
    node = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "openid-client" / "package.json").exists()
    if node and installed:
        return node
    reason = (
        "node is not installed (apt-get install nodejs npm)"
        if not node
        else "openid-client is not installed: npm ci --prefix tests/rp_node"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the openid-client test (.ci/run installs it)")
    pytest.skip(reason)


def run_node(node: str, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(  # fixed script, JSON on stdin
        [node, str(NODE_SCRIPT)],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=NODE_DIR,
    )
    lines = result.stdout.strip().splitlines()
    assert lines, (result.returncode, result.stderr[-2000:])
    return result.returncode, json.loads(lines[-1])


@pytest.fixture
def es256_key() -> jwk.JWK:
    return jwk.JWK.generate(kty="EC", crv="P-256", kid="partner-2026", use="sig", alg="ES256")


@pytest.fixture(params=["private_key_jwt+par", "client_secret_basic"])
def node_rp(request: Any, make_client: Any, es256_key: jwk.JWK) -> dict[str, Any]:
    node = node_or_skip()
    if request.param == "private_key_jwt+par":
        registered = make_client(
            name="Transports (openid-client)",
            redirect_uris=[NODE_REDIRECT_URI],
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [es256_key.export_public(as_dict=True)]},
        )
        assert registered.secret is None
        credentials = {"private_jwk": es256_key.export_private(as_dict=True)}
    else:
        registered = make_client(name="Transports (openid-client)", redirect_uris=[NODE_REDIRECT_URI])
        credentials = {"client_secret": registered.secret}
    return {"node": node, "rp": registered, "variant": request.param, "credentials": credentials}


@pytest.mark.parametrize("tamper", [None, "nonce"])
def test_openid_client_node_example_signs_a_resident_in(provider, node_rp, resident, tamper):
    rp = node_rp["rp"]
    config = {
        "issuer": provider,
        "client_id": rp.client_id,
        "redirect_uri": NODE_REDIRECT_URI,
        **node_rp["credentials"],
    }
    status, started = run_node(node_rp["node"], {**config, "step": "start"})
    assert status == 0, started
    sent = callback_query(started["url"])
    assert started["url"].startswith(provider + "/authorize?")
    if node_rp["variant"] == "private_key_jwt+par":
        # Pushed first (authenticated with a signed assertion): the browser carries a reference.
        assert sent["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
        assert "code_challenge" not in sent and "nonce" not in sent
        assert PushedAuthorizationRequest.objects.filter(client=rp.client).count() == 1
    else:
        assert sent["code_challenge_method"] == "S256" and sent["nonce"] == started["nonce"]
        assert sent["state"] == started["state"] and sent["scope"] == "openid profile email"

    browser = sign_in_and_consent(
        provider, started["url"], email=resident.email, redirect_uri=NODE_REDIRECT_URI
    )
    assert browser["pages"] == ["login", "consent"]
    checks = {key: started[key] for key in ("code_verifier", "state", "nonce")}
    if tamper == "nonce":
        checks["nonce"] = "forged-" + checks["nonce"]
    status, result = run_node(
        node_rp["node"],
        {**config, "step": "callback", "callback_url": browser["callback_url"], "checks": checks},
    )
    if tamper == "nonce":
        assert status == 1 and "nonce mismatch" in result["error"]["message"], result
        return
    assert status == 0, result
    assert result["token_type"].lower() == "bearer" and result["expires_in"] > 0
    assert set(result["scope"].split()) == {"openid", "profile", "email"}
    assert_claims(
        result["claims"],
        result["userinfo"],
        provider=provider,
        rp=rp,
        resident=resident,
        nonce=started["nonce"],
    )
