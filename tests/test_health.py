"""Liveness and readiness probes."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection


def test_healthz_answers_json_without_touching_the_database(client):
    # No django_db mark: any database access here would raise and fail the test.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database(client, settings):
    settings.REDIS_URL = ""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


@pytest.mark.django_db
def test_readyz_checks_redis_when_configured_and_fails_when_unreachable(client, settings):
    # A port nothing listens on: readiness must turn 503 and name the failing part.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "redis": "unreachable"}


@pytest.mark.django_db
def test_readyz_reports_database_unreachable(client, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable"


def test_probes_refuse_writes(client):
    assert client.post("/healthz").status_code == 405
