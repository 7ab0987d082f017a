"""Liveness and readiness probes for load balancers and orchestrators.

`/healthz` says the process answers (no database). `/readyz` says whether a request can be
served: everything a sign-in or a token request needs is checked, and the answer names the
failing part (503, status "unavailable"). A late or absent outbox worker makes the node
"degraded" (200): pages and tokens still work, partners' messages and emails wait.
"""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from connectors.heartbeat import workers_state
from identity.keys import SUPPORTED_ALGORITHMS, NoSigningKey, active_signing_key

log = logging.getLogger(__name__)

_migrated = threading.Event()


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"
        log.warning("readiness: database unreachable (%s)", type(exc).__name__)
        return "unreachable"
    return "ok"


def _check_migrations() -> str:
    """Every migration of this code is applied. Once true it stays true for the life of the
    process (a deployment migrates before or while new code starts, never backwards), so
    the migration graph is read only until then."""
    if _migrated.is_set():
        return "ok"
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        log.warning("readiness: migration state unreadable (%s)", type(exc).__name__)
        return "unreachable"
    if plan:
        log.warning("readiness: %d migrations not applied", len(plan))
        return "pending"
    _migrated.set()
    return "ok"


def _check_redis() -> str:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
    except redis.RedisError as exc:
        log.warning("readiness: redis unreachable (%s)", type(exc).__name__)
        return "unreachable"
    return "ok"


def _check_cache_tables() -> str:
    """Without Redis, rate-limit counters live in a database cache table that
    `manage.py createcachetable` creates: without it every sign-in fails."""
    for alias, config in settings.CACHES.items():
        if str(config["BACKEND"]).endswith("DatabaseCache"):
            try:
                caches[alias].get("readyz-probe")
            except DatabaseError as exc:
                log.warning("readiness: cache table of %r unusable (%s)", alias, type(exc).__name__)
                return "missing"
    return "ok"


def _check_signing_keys() -> str:
    try:
        # Every algorithm a partner may be registered with (and discovery advertises).
        for algorithm in SUPPORTED_ALGORITHMS:
            active_signing_key(algorithm)
    except NoSigningKey:
        log.warning("readiness: no active signing key for an advertised algorithm")
        return "missing"
    except Exception as exc:
        log.warning("readiness: signing keys unreadable (%s)", type(exc).__name__)
        return "unreachable"
    return "ok"


def _check_outbox_worker() -> str:
    try:
        return workers_state().state
    except DatabaseError as exc:
        log.warning("readiness: outbox heartbeats unreadable (%s)", type(exc).__name__)
        return "unreachable"


# Checks whose failure leaves the node serving (status "degraded", 200).
_DEGRADING = {"outbox_worker"}


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database()}
    if checks["database"] == "ok":
        checks["migrations"] = _check_migrations()
        checks["cache"] = _check_redis() if settings.REDIS_URL else _check_cache_tables()
        if checks["migrations"] == "ok":
            checks["signing_keys"] = _check_signing_keys()
            checks["outbox_worker"] = _check_outbox_worker()
    elif settings.REDIS_URL:
        checks["cache"] = _check_redis()
    failed = {name for name, value in checks.items() if value != "ok"}
    if failed - _DEGRADING or checks.get("outbox_worker") is None:
        status, code = "unavailable", 503
    elif failed:
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JsonResponse({"status": status, "checks": checks}, status=code)
