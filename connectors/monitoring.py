"""What operators watch per partner (docs/operators.md, "Watching partners"): the outbox's
queue per partner client, counted in aggregate, and each connector's health check, run on
demand, bounded and cached.

- `partner_rows()`: one row per partner client that has outbox messages or a
  `PartnerConnector`: queue depth (pending), age of the oldest pending message, failing
  (pending with attempts > 0) and the types of their last errors, dead letters, delivered.
  Two GROUP BY queries over the outbox, whatever its size (never a loop over messages),
  one over the connectors and one for the partners' names.
- `health_check(partner_connector)`: the connector's `health()` in a worker thread, waited
  for at most HEALTH_CHECK_TIMEOUT_SECONDS (the connector's own timeouts bound it too), the
  answer cached HEALTH_CACHE_SECONDS for the pages: a page load only reads the cache
  (`cached_health`), it never asks a partner.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Min, Q
from django.utils import timezone
from oauth2_provider.models import get_application_model

from connectors.links import connector_for
from connectors.models import OutboxMessage, PartnerConnector
from connectors.protocol import ConnectorError
from consent import erasure

HEALTH_CHECK_TIMEOUT_SECONDS = 5.0
HEALTH_CACHE_SECONDS = 120
_HEALTH_KEY = "connectors.health:{pk}"

_PENDING = Q(status=OutboxMessage.Status.PENDING)
_FAILING = _PENDING & Q(attempts__gt=0)


def error_type(last_error: str) -> str:
    """The type of an outbox error, never its detail: "HTTP 503", "unreachable",
    "partner_unavailable", "handler error"… (the text before the first colon)."""
    return last_error.split(":", 1)[0].strip()[:40] or "?"


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    detail: str
    checked_at: datetime


@dataclass(frozen=True)
class ConnectorHealth:
    connector: PartnerConnector
    health: HealthResult | None  # None: not checked recently


@dataclass
class PartnerRow:
    partner: str  # the partner client's client_id
    name: str
    pending: int = 0
    oldest_pending_at: datetime | None = None
    failing: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    dead: int = 0
    delivered: int = 0
    connectors: list[ConnectorHealth] = field(default_factory=list)

    def oldest_pending_age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_pending_at is None else now - self.oldest_pending_at


def _queue_counts() -> dict[str, dict[str, Any]]:
    rows = (
        OutboxMessage.objects.exclude(partner="")
        .values("partner")
        .annotate(
            pending=Count("pk", filter=_PENDING),
            oldest=Min("created_at", filter=_PENDING),
            failing=Count("pk", filter=_FAILING),
            dead=Count("pk", filter=Q(status=OutboxMessage.Status.DEAD)),
            delivered=Count("pk", filter=Q(status=OutboxMessage.Status.DELIVERED)),
        )
        .order_by()
    )
    return {row["partner"]: row for row in rows}


def _error_types() -> dict[str, dict[str, int]]:
    types: dict[str, dict[str, int]] = {}
    rows = (
        OutboxMessage.objects.exclude(partner="")
        .filter(_FAILING)
        .values("partner", "last_error")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in rows:
        per_partner = types.setdefault(row["partner"], {})
        kind = error_type(row["last_error"])
        per_partner[kind] = per_partner.get(kind, 0) + row["count"]
    return types


def partner_rows() -> list[PartnerRow]:
    """Every partner with outbox messages or a connector, by name (docs/operators.md)."""
    counts = _queue_counts()
    errors = _error_types()
    connectors = list(PartnerConnector.objects.select_related("client").order_by("kind"))
    partners = set(counts) | {item.client.client_id for item in connectors}
    names = dict(
        get_application_model().objects.filter(client_id__in=partners).values_list("client_id", "name")
    )
    rows = {partner: PartnerRow(partner=partner, name=names.get(partner) or partner) for partner in partners}
    for partner, count in counts.items():
        row = rows[partner]
        row.pending, row.oldest_pending_at = count["pending"], count["oldest"]
        row.failing, row.dead, row.delivered = count["failing"], count["dead"], count["delivered"]
        row.error_types = dict(sorted(errors.get(partner, {}).items()))
    for item in connectors:
        rows[item.client.client_id].connectors.append(ConnectorHealth(item, cached_health(item)))
    return sorted(rows.values(), key=lambda row: (row.name.casefold(), row.partner))


# --- health -------------------------------------------------------------------------------------


def cached_health(partner_connector: PartnerConnector) -> HealthResult | None:
    value = cache.get(_HEALTH_KEY.format(pk=partner_connector.pk))
    return value if isinstance(value, HealthResult) else None


def health_check(
    partner_connector: PartnerConnector, *, timeout: float = HEALTH_CHECK_TIMEOUT_SECONDS
) -> HealthResult:
    """Ask the partner now, waiting at most `timeout` seconds, and cache the answer."""
    now = timezone.now()
    try:
        connector = connector_for(partner_connector)
    except ConnectorError as exc:
        result = HealthResult(False, exc.code, now)
    else:
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="health")
        future = executor.submit(connector.health)
        try:
            health = future.result(timeout=timeout)
            result = HealthResult(health.ok, health.detail[:100], now)
        except concurrent.futures.TimeoutError:
            result = HealthResult(False, "timeout", now)
        except ConnectorError as exc:
            result = HealthResult(False, exc.code, now)
        except Exception as exc:  # a broken connector must not break the operators' page
            result = HealthResult(False, type(exc).__name__, now)
        finally:
            # The thread ends by the connector's own timeouts; nobody waits for it here.
            executor.shutdown(wait=False)
    cache.set(_HEALTH_KEY.format(pk=partner_connector.pk), result, HEALTH_CACHE_SECONDS)
    return result


# --- the partners' erasure requests (consent.erasure's delivery reader) -------------------------


def partner_erasure_deliveries(request_ids: list[str]) -> dict[tuple[str, str], erasure.PartnerDelivery]:
    """Where each partner's message of these rights requests stands (`rights.partner_erasure`
    today; any kind sent to a partner with the request's id in its payload): one query. The
    latest message per request and partner wins."""
    rows = (
        OutboxMessage.objects.exclude(partner="")
        .filter(payload__request_id__in=request_ids)
        .order_by("created_at")
        .values_list("payload", "partner", "status", "attempts", "last_error", "created_at", "delivered_at")
    )
    deliveries = {}
    for payload, partner, status, attempts, last_error, created_at, delivered_at in rows:
        request_id = str((payload or {}).get("request_id", ""))
        deliveries[(request_id, partner)] = erasure.PartnerDelivery(
            status=status,
            attempts=attempts,
            error_type=error_type(last_error) if last_error else "",
            created_at=created_at,
            delivered_at=delivered_at,
        )
    return deliveries
