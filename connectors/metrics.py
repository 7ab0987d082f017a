"""The outbox's figures for Prometheus (common/metrics.py), read at scrape time: one
GROUP BY over the messages not yet delivered (pending and dead; delivered rows are never
scanned), and the outbox workers' heartbeats."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Max, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from connectors.models import OutboxMessage, WorkerHeartbeat

_PENDING = Q(status=OutboxMessage.Status.PENDING)
# Messages for residents (emails) and the service itself have no partner client.
NO_PARTNER = "(none)"


def collect() -> Iterable[Metric]:
    now = timezone.now()
    depth = GaugeMetricFamily(
        "cum_outbox_pending", "Outbox messages waiting for delivery, by partner.", labels=["partner"]
    )
    oldest = GaugeMetricFamily(
        "cum_outbox_oldest_pending_age_seconds",
        "Age of the oldest waiting message, by partner.",
        labels=["partner"],
    )
    failing = GaugeMetricFamily(
        "cum_outbox_failing",
        "Waiting messages that already failed at least once, by partner.",
        labels=["partner"],
    )
    dead = GaugeMetricFamily(
        "cum_outbox_dead", "Dead-lettered messages (need a replay), by partner.", labels=["partner"]
    )
    rows = (
        OutboxMessage.objects.filter(status__in=[OutboxMessage.Status.PENDING, OutboxMessage.Status.DEAD])
        .values("partner")
        .annotate(
            pending=Count("pk", filter=_PENDING),
            oldest=Min("created_at", filter=_PENDING),
            failing=Count("pk", filter=_PENDING & Q(attempts__gt=0)),
            dead=Count("pk", filter=Q(status=OutboxMessage.Status.DEAD)),
        )
        .order_by()
    )
    for row in rows:
        partner = [row["partner"] or NO_PARTNER]
        depth.add_metric(partner, row["pending"])
        failing.add_metric(partner, row["failing"])
        dead.add_metric(partner, row["dead"])
        if row["oldest"] is not None:
            oldest.add_metric(partner, (now - row["oldest"]).total_seconds())
    yield from (depth, oldest, failing, dead)

    beats = WorkerHeartbeat.objects.aggregate(last=Max("beat_at"), workers=Count("pk"))
    workers = GaugeMetricFamily("cum_outbox_workers", "Outbox worker processes with a heartbeat row.")
    workers.add_metric([], beats["workers"])
    yield workers
    if beats["last"] is not None:
        age = GaugeMetricFamily(
            "cum_outbox_worker_heartbeat_age_seconds", "Age of the newest worker heartbeat."
        )
        age.add_metric([], (now - beats["last"]).total_seconds())
        yield age
