"""The ledger's figures for Prometheus (common/metrics.py), read at scrape time: its size
and the age and size of the last signed tree head (two single-row reads)."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from consent.models import LedgerHead, TreeHead


def collect() -> Iterable[Metric]:
    size = LedgerHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
    events = GaugeMetricFamily("cum_ledger_events", "Events in the consent ledger's Merkle tree.")
    events.add_metric([], size)
    yield events
    signed = TreeHead.objects.order_by("-timestamp").values_list("timestamp", "tree_size").first()
    if signed is not None:
        age = GaugeMetricFamily(
            "cum_ledger_signed_tree_head_age_seconds", "Age of the last signed tree head."
        )
        age.add_metric([], (timezone.now() - signed[0]).total_seconds())
        yield age
        unsigned = GaugeMetricFamily(
            "cum_ledger_unsigned_events", "Events appended since the last signed tree head."
        )
        unsigned.add_metric([], max(0, size - signed[1]))
        yield unsigned
