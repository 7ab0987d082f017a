"""Shared fixtures: residents, clients, signing keys, and an OIDC helper for flows."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import secrets
from dataclasses import dataclass
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.http import HttpRequest
from django.test import Client as BrowserClient
from django.utils import translation
from jwcrypto import jwk, jwt

from connectors.handlers import EMAIL
from connectors.outbox import relay_once
from identity.client_cache import client_cache_clear
from identity.keys import clear_key_cache, signing_keys_ensure
from identity.oidc.clients import client_register
from identity.services import user_create
from identity.sessions import SESSION_AUTH_TIME
from identity.signin import session_login

PASSWORD = "correct horse battery staple"
REDIRECT_URI = "https://rp.example.org/callback"


def clear_test_caches() -> None:
    """Empty this test process's caches (rate-limit counters, sessions in Redis…).

    Never `cache.clear()` in a test: on Redis it empties the whole database, counters of the
    tests running at the same time in the other pytest-xdist workers included (each worker
    has its own key prefix: config/settings.py); this deletes only this worker's keys."""
    for alias, config in settings.CACHES.items():
        backend = config["BACKEND"]
        if backend.endswith("RedisCache"):
            client = caches[alias]._cache.get_client(write=True)
            for key in client.scan_iter(match=f"{config.get('KEY_PREFIX', '')}:*"):
                client.delete(key)
        elif backend.endswith("LocMemCache"):
            caches[alias].clear()
        # The database cache lives in the test transaction and is rolled back with it.


@pytest.fixture(autouse=True)
def _isolated_caches() -> Any:
    """Every test starts with empty caches."""
    clear_test_caches()
    yield


@pytest.fixture(autouse=True)
def _default_language_afterwards() -> Any:
    """A request in English (cookie, ui_locales) leaves English active in this thread: every
    test ends with the default language again, so that the next one does not inherit it."""
    yield

    translation.deactivate()


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Any:
    clear_key_cache()
    client_cache_clear()
    yield
    clear_key_cache()
    client_cache_clear()


def _ledger_migration(name: str) -> Any:
    return importlib.import_module(f"consent.migrations.{name}")


def _uses_transactional_db(request: Any) -> bool:
    if {"transactional_db", "live_server"} & set(request.fixturenames):
        return True
    marker = request.node.get_closest_marker("django_db")
    return bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))


@pytest.fixture(autouse=True)
def _consent_ledger_between_tests(request: Any) -> Any:
    """Keep the seeded consent catalogue and the append-only triggers across tests.

    Transactional tests end with a flush (DELETE on SQLite, TRUNCATE on PostgreSQL). The
    ledger's SQLite triggers rightly refuse DELETE, so they are lifted for the flush only
    and put back before the next test; the catalogue seeded by a data migration is
    restored the same way.
    """
    marker = request.node.get_closest_marker("django_db")
    needs_db = marker is not None or {"db", "transactional_db", "live_server"} & set(request.fixturenames)
    if not needs_db:
        yield
        return

    triggers = _ledger_migration("0002_append_only_triggers")
    seed = _ledger_migration("0003_seed_catalogue")
    request.getfixturevalue("transactional_db" if _uses_transactional_db(request) else "db")
    editor = _RawEditor(connection)
    if connection.vendor == "sqlite":
        triggers.drop_triggers(apps, editor)
        triggers.create_triggers(apps, editor)
    if not apps.get_model("consent", "Purpose").objects.exists():
        seed.seed(apps, editor)
    yield
    if _uses_transactional_db(request) and connection.vendor == "sqlite":
        triggers.drop_triggers(apps, editor)


class _RawEditor:
    """The bit of a schema editor the ledger migrations use (SQLite's real one refuses
    to open inside a test transaction)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute(self, sql: str, params: Any = None) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)


@pytest.fixture
def signing_keys(db: Any) -> Any:
    return signing_keys_ensure()


@pytest.fixture
def make_resident(db: Any) -> Any:
    counter = iter(range(1, 10_000))

    def make(email: str | None = None, password: str = PASSWORD, **extra: Any) -> Any:
        extra.setdefault("given_name", "Camille")
        extra.setdefault("family_name", "Martin")
        extra.setdefault("email_verified", True)
        return user_create(email=email or f"resident{next(counter)}@example.org", password=password, **extra)

    return make


@pytest.fixture
def resident(make_resident: Any) -> Any:
    return make_resident("camille@example.org")


def deliver_emails() -> int:
    """Send the queued emails now, as `manage.py outbox_worker` would, and say how many left.

    Emails to residents are outbox messages (identity.emails.send_email): a request only
    queues them. Tests that read `django.core.mail.outbox` call this after the request; it
    runs the real relay (connectors.outbox.relay_once) for email messages only, so that
    partner deliveries queued by the same test are not attempted.
    """
    delivered = 0
    while True:
        result = relay_once(kinds=[EMAIL])
        delivered += result.delivered
        if not result.processed:
            return delivered


@dataclass
class RegisteredClient:
    client: Any
    secret: str | None

    @property
    def client_id(self) -> str:
        return self.client.client_id

    def basic_auth(self) -> str:
        raw = f"{self.client_id}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def make_client(db: Any, signing_keys: Any) -> Any:
    def make(**kwargs: Any) -> RegisteredClient:
        kwargs.setdefault("name", "Billetterie culturelle")
        kwargs.setdefault("redirect_uris", [REDIRECT_URI])
        kwargs.setdefault("grant_types", ["authorization_code"])
        kwargs.setdefault("scopes", ["openid", "profile", "email"])
        # The suites' partner signs RS256, as every partner registered before ES256 became
        # the default does (still selectable); the default itself: test_key_rotation.py.
        kwargs.setdefault("signing_alg", "RS256")
        client, secret = client_register(**kwargs)
        return RegisteredClient(client, secret)

    return make


@pytest.fixture
def rp(make_client: Any) -> RegisteredClient:
    """A confidential partner client with the authorization-code grant."""
    return make_client(post_logout_redirect_uris=["https://rp.example.org/bye"])


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OIDCFlow:
    """Drives the authorization-code flow with Django's test client, as a browser + RP would."""

    def __init__(self, browser: BrowserClient, rp: RegisteredClient) -> None:
        self.browser = browser
        self.rp = rp
        self.verifier, self.challenge = pkce_pair()
        self.state = secrets.token_urlsafe(8)
        self.nonce = secrets.token_urlsafe(8)

    def authorize_params(self, **overrides: Any) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.rp.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return {key: value for key, value in params.items() if value is not None}

    def authorize(self, method: str = "get", **overrides: Any) -> Any:
        params = self.authorize_params(**overrides)
        if method == "post":
            return self.browser.post("/authorize", params)
        return self.browser.get("/authorize", params)

    def approve(self, response: Any) -> Any:
        """Click "Autoriser" on the consent page contained in `response`."""
        pending = response.context["pending_id"]
        return self.browser.post("/authorize/decision", {"pending": pending, "decision": "allow"})

    def code_from(self, response: Any) -> str:
        assert response.status_code in (302, 303), response.status_code
        query = parse_qs(urlsplit(response["Location"]).query)
        assert "code" in query, query
        assert query["state"] == [self.state]
        return query["code"][0]

    def continue_notice(self, response: Any) -> Any:
        """Press "Continuer" on an internal service's information page contained in `response`."""
        notice = response.context["notice_id"]
        return self.browser.post("/authorize/information", {"pending": notice})

    def get_code(self, **overrides: Any) -> str:
        response = self.authorize(**overrides)
        if response.status_code == 200 and "pending_id" in (response.context or {}):
            response = self.approve(response)
        elif response.status_code == 200 and "notice_id" in (response.context or {}):
            response = self.continue_notice(response)
        return self.code_from(response)

    def token(self, code: str, **overrides: Any) -> Any:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": self.verifier,
        }
        data.update(overrides)
        data = {key: value for key, value in data.items() if value is not None}
        return BrowserClient().post("/token", data, HTTP_AUTHORIZATION=self.rp.basic_auth())


def redirect_query(response: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(response["Location"]).query)


def verify_id_token(raw: str, audience: str) -> dict[str, Any]:
    """Independent verification: keys from the published JWKS document."""
    keys = jwk.JWKSet.from_json(BrowserClient().get("/jwks.json").content.decode())
    token = jwt.JWT(jwt=raw, key=keys, algs=["RS256", "ES256"], check_claims={"aud": audience, "exp": None})
    return json.loads(token.claims)


@pytest.fixture
def signed_in(client: BrowserClient, resident: Any, rf: Any) -> BrowserClient:
    """Django's test client with the resident signed in through the real login page."""
    response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    return client


@pytest.fixture
def flow(signed_in: BrowserClient, rp: RegisteredClient) -> OIDCFlow:
    return OIDCFlow(signed_in, rp)


MFA_AMR = ("pwd", "otp", "mfa")


def open_session(client: BrowserClient, user: Any, amr: Any = MFA_AMR, *, age: int = 0) -> BrowserClient:
    """Open a real session for `user` in Django's test client, as a sign-in by the methods
    `amr` (RFC 8176) would: identity.signin.session_login on a request of its own, the
    session cookie handed to the client. `age`: how many seconds ago the sign-in was.

    ["pwd"] is a FranceConnect or password-only sign-in, ["hwk"] a passkey used without
    user verification, MFA_AMR a password + second factor sign-in.
    """
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    request.META.update({"HTTP_USER_AGENT": "pytest", "REMOTE_ADDR": "127.0.0.1"})
    session_login(request=request, user=user, amr=list(amr))
    if age:
        request.session[SESSION_AUTH_TIME] = int(request.session[SESSION_AUTH_TIME]) - age
    request.session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key
    return client


def staff_mfa_login(client: BrowserClient, user: Any) -> BrowserClient:
    """A staff member signed in at the MFA level, just now (what every staff page requires)."""
    return open_session(client, user, MFA_AMR)


@pytest.fixture
def admin_client(db: Any, admin_user: Any) -> BrowserClient:
    """pytest-django's admin client, signed in at the MFA level (a password-only staff
    session opens no staff page: tests/security/test_staff_sign_in.py)."""
    return staff_mfa_login(BrowserClient(), admin_user)


__all__ = [
    "MFA_AMR",
    "PASSWORD",
    "REDIRECT_URI",
    "OIDCFlow",
    "open_session",
    "redirect_query",
    "session_login",
    "staff_mfa_login",
    "verify_id_token",
]


# The operations suite (tests/ops: several real server and worker processes, load, faults)
# takes minutes: it runs only when asked, `pytest tests/ops --ops` (docs/operations.md).
# OPS_PROFILE=short (what .ci/run uses) shortens it; the default is the full profile.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--ops", action="store_true", help="run the operations suite (tests marked ops)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--ops"):
        return
    skip = pytest.mark.skip(reason="operations suite: run with --ops (docs/operations.md)")
    for item in items:
        if item.get_closest_marker("ops") is not None:
            item.add_marker(skip)
