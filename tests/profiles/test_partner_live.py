"""A partner over a real socket: the portal's page and back-end call the profiles API on our
provider listening on 127.0.0.1 (pytest-django's live_server), with `requests`.

The visitor's choice goes through the cookie API, page views and the personalisation answer
through the profiles API, CORS headers as a browser would read them; the back-end uses a
resident's access token obtained by the authorization-code flow.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import requests
from django.apps import apps as django_apps

from tests.conftest import OIDCFlow
from tests.consent_api.conftest import flushable_ledger as flushable_ledger  # re-exported fixture
from tests.oidc.conftest import complete_flow
from tests.profiles.conftest import BROWSING, decide

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "https://www.nantes.fr"
SCOPES = "openid territory interests accessibility"


@pytest.fixture
def catalogue(transactional_db: Any, flushable_ledger: Any) -> None:
    """The seeded purposes (a transactional test's flush removes them)."""
    importlib.import_module("consent.migrations.0003_seed_catalogue").seed(django_apps, None)


@pytest.fixture
def portal(catalogue: Any, make_client: Any) -> Any:
    registered = make_client(name="Portail nantes.fr", scopes=SCOPES.split())
    registered.client.allowed_origins = ORIGIN
    registered.client.save(update_fields=["allowed_origins"])
    return registered


def test_the_portal_page_over_http(live_server: Any, portal: Any) -> None:
    base = f"{live_server.url}/profiles/api/v1"
    query = {"client_id": portal.client_id}
    headers = {"Origin": ORIGIN}
    choice = requests.post(
        f"{live_server.url}/consent/api/v1/cookie/choices",
        params=query,
        json={"client_id": portal.client_id, "choices": {BROWSING: True}},
        headers=headers,
        timeout=10,
    )
    assert choice.status_code == 201, choice.text
    visitor = {
        "client_id": portal.client_id,
        "browser_id": choice.json()["browser_id"],
        "browser_secret": choice.json()["browser_secret"],
    }
    preflight = requests.options(
        f"{base}/page-views",
        params=query,
        headers={**headers, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    sent = requests.post(
        f"{base}/page-views",
        params=query,
        json={**visitor, "site": "www.nantes.fr", "themes": ["culture"]},
        headers=headers,
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    assert sent.headers["Access-Control-Allow-Origin"] == ORIGIN
    answer = requests.post(f"{base}/personalisation", params=query, json=visitor, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert [item["value"]["code"] for item in answer.json()["items"]] == ["culture"]
    refused = requests.post(
        f"{base}/personalisation",
        params=query,
        json=visitor,
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    assert refused.headers["Content-Type"] == "application/problem+json"


def test_the_portal_back_end_over_http(live_server: Any, portal: Any, signed_in: Any, resident: Any) -> None:
    decide(resident, BROWSING, True)
    token = complete_flow(OIDCFlow(signed_in, portal), scope=SCOPES)["access_token"]
    base = f"{live_server.url}/profiles/api/v1"
    auth = {"Authorization": f"Bearer {token}"}
    sent = requests.post(
        f"{base}/page-views", json={"site": "www.nantes.fr", "themes": ["sport"]}, headers=auth, timeout=10
    )
    assert sent.status_code == 202, sent.text
    answer = requests.get(f"{base}/personalisation", headers=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    [item] = answer.json()["items"]
    assert item["value"]["code"] == "sport" and item["reason"]["purpose"] == BROWSING
    assert item["reason"]["sharing"] is True
    decide(resident, BROWSING, False)
    assert requests.get(f"{base}/personalisation", headers=auth, timeout=10).json()["items"] == []
    bad = requests.get(f"{base}/personalisation", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
