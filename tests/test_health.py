"""Liveness and readiness probes."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import OperationalError, connection
from django.utils import timezone

from config import health
from connectors.heartbeat import Heart
from connectors.models import WorkerHeartbeat
from identity.keys import clear_key_cache, signing_keys_ensure
from identity.models import SigningKey


def test_healthz_answers_json_without_touching_the_database(client):
    # No django_db mark: any database access here would raise and fail the test.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
def live_worker(db):
    """An outbox worker's heartbeat, as `manage.py outbox_worker` writes it."""
    heart = Heart("test-host:1")
    heart.beat(force=True)
    return heart


@pytest.fixture
def signing_keys(db):
    signing_keys_ensure()
    clear_key_cache()


@pytest.mark.django_db
def test_readyz_reports_every_part_a_request_needs(client, settings, signing_keys, live_worker):
    settings.REDIS_URL = ""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "migrations": "ok",
            "cache": "ok",
            "signing_keys": "ok",
            "outbox_worker": "ok",
        },
    }


@pytest.mark.django_db
def test_readyz_checks_redis_when_configured_and_fails_when_unreachable(client, settings):
    # A port nothing listens on: readiness must turn 503 and name the failing part.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["cache"] == "unreachable"
    assert body["checks"]["database"] == "ok"


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


@pytest.mark.django_db
def test_readyz_fails_without_a_signing_key_for_an_advertised_algorithm(client, settings, live_worker):
    # A database where `ensure_signing_keys` never ran: every token request would fail.
    settings.REDIS_URL = ""
    SigningKey.objects.all().delete()
    clear_key_cache()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["signing_keys"] == "missing"

    call_command("ensure_signing_keys", stdout=io.StringIO())
    clear_key_cache()
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_fails_when_only_one_algorithm_has_a_key(client, settings, signing_keys, live_worker):
    settings.REDIS_URL = ""
    SigningKey.objects.filter(algorithm="ES256").delete()
    clear_key_cache()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["signing_keys"] == "missing"


@pytest.mark.django_db(transaction=True)
def test_readyz_fails_without_the_rate_limit_cache_table(client, settings, signing_keys, live_worker):
    # Without Redis the rate-limit counters live in the table `createcachetable` makes;
    # without it every sign-in fails, so the node is not ready.
    settings.REDIS_URL = ""
    if not settings.CACHES["ratelimit"]["BACKEND"].endswith("DatabaseCache"):
        pytest.skip("this deployment keeps rate-limit counters in Redis (checked by the Redis test)")
    table = settings.CACHES["ratelimit"]["LOCATION"]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(table)}")
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["cache"] == "missing"
    finally:
        call_command("createcachetable", "--database", "default", stdout=io.StringIO())
    caches["ratelimit"].get("x")
    assert client.get("/readyz").json()["checks"]["cache"] == "ok"


@pytest.mark.django_db
def test_readyz_fails_while_migrations_are_pending(client, settings, signing_keys, live_worker, monkeypatch):
    # New code started before `migrate`: the executor's plan is not empty.
    settings.REDIS_URL = ""
    monkeypatch.setattr(health, "_migrated", type(health._migrated)())
    pending = [("pretend", False)]
    monkeypatch.setattr(health.MigrationExecutor, "migration_plan", lambda self, targets: pending)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["migrations"] == "pending"
    assert "signing_keys" not in body["checks"]

    pending.clear()  # migrate ran
    assert client.get("/readyz").json()["checks"]["migrations"] == "ok"


@pytest.mark.django_db
def test_readyz_is_degraded_not_failed_when_no_worker_ever_beat(client, settings, signing_keys):
    settings.REDIS_URL = ""
    WorkerHeartbeat.objects.all().delete()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["outbox_worker"] == "never_seen"


@pytest.mark.django_db
def test_readyz_is_degraded_when_the_worker_is_late(client, settings, signing_keys, live_worker):
    settings.REDIS_URL = ""
    settings.OUTBOX_HEARTBEAT_LATE_SECONDS = 60
    WorkerHeartbeat.objects.update(beat_at=timezone.now() - timedelta(seconds=61))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["outbox_worker"] == "late"

    live_worker.beat(force=True)
    assert client.get("/readyz").json()["status"] == "ok"


@pytest.mark.django_db
def test_a_stopped_worker_no_longer_counts(client, settings, signing_keys, live_worker):
    settings.REDIS_URL = ""
    live_worker.stop()
    assert client.get("/readyz").json()["checks"]["outbox_worker"] == "never_seen"


@pytest.mark.django_db
def test_heart_beats_at_most_every_ten_seconds():
    heart = Heart("test-host:2")
    assert heart.beat() is True
    first = WorkerHeartbeat.objects.get(worker="test-host:2").beat_at
    assert heart.beat() is False
    assert WorkerHeartbeat.objects.get(worker="test-host:2").beat_at == first


@pytest.mark.django_db
def test_heart_forgets_workers_gone_for_a_day():
    WorkerHeartbeat.objects.create(
        worker="old-host:9",
        started_at=timezone.now() - timedelta(days=3),
        beat_at=timezone.now() - timedelta(days=2),
    )
    Heart("test-host:3").beat()
    assert list(WorkerHeartbeat.objects.values_list("worker", flat=True)) == ["test-host:3"]
