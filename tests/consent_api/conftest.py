"""Fixtures for the cookie-consent API, the widget and the DPO console."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.test import Client as BrowserClient

from consent.models import ConsentState, LedgerEvent, LedgerHead, Subject, TreeHead
from identity.demo import DEMO_CLIENT_NAME
from identity.models import AuditEvent
from identity.oidc.models import Client
from tests.conftest import staff_mfa_login

PARTNER_ORIGIN = "https://billetterie.example.org"
OTHER_ORIGIN = "https://evil.example.net"
CHOICES_URL = "/consent/api/v1/cookie/choices"
CONFIG_URL = "/consent/api/v1/cookie/config"


@pytest.fixture(autouse=True)
def catalogue(db: Any) -> None:
    """The seeded purposes and global notice (a transactional test's flush removes them)."""
    seed = importlib.import_module("consent.migrations.0003_seed_catalogue").seed
    seed(django_apps, None)


@pytest.fixture
def partner(make_client: Any) -> Any:
    registered = make_client(name="Billetterie culturelle")
    registered.client.allowed_origins = f"{PARTNER_ORIGIN} https://www.billetterie.example.org"
    registered.client.save(update_fields=["allowed_origins"])
    return registered.client


@pytest.fixture
def api() -> BrowserClient:
    return BrowserClient()


def post_choices(
    http: BrowserClient,
    body: Any,
    *,
    origin: str | None = PARTNER_ORIGIN,
    query: str = "",
    raw: bytes | None = None,
) -> Any:
    extra: dict[str, str] = {}
    if origin is not None:
        extra["HTTP_ORIGIN"] = origin
    data = raw if raw is not None else json.dumps(body)
    return http.post(CHOICES_URL + query, data=data, content_type="application/json", **extra)


@pytest.fixture
def snapshot() -> Any:
    def take() -> dict[str, int]:
        head = LedgerHead.objects.filter(pk=1).first()
        return {
            "events": LedgerEvent.objects.count(),
            "subjects": Subject.objects.count(),
            "states": ConsentState.objects.count(),
            "tree_heads": TreeHead.objects.count(),
            "head_size": head.size if head else 0,
        }

    return take


@pytest.fixture
def make_dpo(make_resident: Any) -> Any:
    def make(email: str = "dpo@nantesmetropole.fr") -> Any:
        user = make_resident(email)
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        user.groups.add(Group.objects.get_or_create(name="dpo")[0])
        return user

    return make


@pytest.fixture
def dpo(make_dpo: Any) -> Any:
    return make_dpo()


@pytest.fixture
def dpo_http(dpo: Any) -> BrowserClient:
    # Staff pages need a session at the MFA level (tests/security/test_staff_sign_in.py).
    return staff_mfa_login(BrowserClient(), dpo)


def audit_reads(**filters: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event="dpo.read", **filters).order_by("id"))


@pytest.fixture
def flushable_ledger(transactional_db: Any) -> Any:
    """Let a transactional test's flush empty the append-only tables on SQLite.

    Django flushes SQLite with DELETE, which the append-only triggers refuse (PostgreSQL
    flushes with TRUNCATE, which row triggers do not see). After the test, the ledger rows
    are removed with the triggers briefly dropped, then the triggers are put back.
    """
    yield

    if connection.vendor != "sqlite":
        return
    migration = importlib.import_module("consent.migrations.0002_append_only_triggers")
    with connection.cursor() as cursor:
        for statement in migration._drop_statements("sqlite"):
            cursor.execute(statement)
        for table in (
            "consent_consentstate",
            "consent_ledgerevent",
            "consent_merklenode",
            "consent_treehead",
        ):
            cursor.execute(f"DELETE FROM {table}")
        for statement in migration._statements("sqlite"):
            cursor.execute(statement)


@pytest.fixture
def widget_server(live_server: Any, settings: Any, tmp_path: Any) -> str:
    """The demo portal (load_demo) served by live_server, its issuer the live server's address:
    the cookie widget's demo partner page for the browser tests (widget_browser.py)."""
    settings.ISSUER = live_server.url
    settings.VAR_DIR = tmp_path
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    call_command("ensure_signing_keys")
    call_command("load_demo")
    # What load_demo should do itself (see the report): register the issuer as an origin.
    client = Client.objects.get(name=DEMO_CLIENT_NAME)
    client.allowed_origins = live_server.url
    client.save(update_fields=["allowed_origins"])
    return live_server.url
