"""The ledger's figures for Prometheus (common/metrics.py), read at scrape time: the events
appended (the leaf-index counter), those the sequencer has not integrated yet (the head row),
and the age and size of the last signed tree head (three single-row reads)."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from consent.models import LedgerHead, LedgerSequence, TreeHead


def collect() -> Iterable[Metric]:
    size = LedgerSequence.objects.filter(pk=1).values_list("next_seq", flat=True).first() or 0
    integrated = LedgerHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
    events = GaugeMetricFamily("cum_ledger_events", "Events appended to the consent ledger.")
    events.add_metric([], size)
    yield events
    pending = GaugeMetricFamily(
        "cum_ledger_pending_events",
        "Events appended, not yet integrated into the Merkle tree by the sequencer.",
    )
    pending.add_metric([], max(0, size - integrated))
    yield pending
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
