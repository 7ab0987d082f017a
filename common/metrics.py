"""Prometheus metrics (the standard `prometheus_client` library), served at `/metrics`.

Counters and histograms are incremented where things happen (the access line, the audit
log, rate-limit refusals, token issuance, consent events). Under several worker processes
(granian `--workers N`), set `PROMETHEUS_MULTIPROC_DIR` to an empty directory shared by the
processes of one node (emptied before they start): each process writes its values there and
a scrape sums them. Database-wide figures (ledger size, tree head age, outbox depth per
partner) are read at scrape time by collectors the apps register here
(`register_collector`), once per scrape, not per process.

Labels are closed sets (route patterns, grant types, purpose codes, event names), never
values a resident or a partner chose.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar, cast

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

REQUESTS = Counter(
    "cum_http_requests",
    "HTTP requests answered, by route pattern, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "cum_http_request_duration_seconds",
    "Time to answer a request, by route pattern.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SIGNINS = Counter("cum_signins", "Sign-in attempts by method and outcome.", ["method", "outcome"])
MFA_CHALLENGES = Counter(
    "cum_mfa_challenges", "Second-factor checks by factor kind and outcome.", ["kind", "outcome"]
)
AUDIT_EVENTS = Counter("cum_audit_events", "Security audit events written, by event.", ["event"])
TOKENS_ISSUED = Counter(
    "cum_tokens_issued", "Token responses issued by the token endpoint, by grant type.", ["grant_type"]
)
CONSENT_EVENTS = Counter(
    "cum_consent_events",
    "Consent ledger events recorded (committed), by type and purpose.",
    ["type", "purpose"],
)
RATE_LIMIT_REFUSALS = Counter(
    "cum_rate_limit_refusals", "Attempts refused by a rate limit, by scope.", ["scope"]
)

M = TypeVar("M", Counter, Histogram)


def child(metric: M, *labelvalues: str) -> M:
    """`metric.labels(*labelvalues)` for label values that are already strings: the child
    prometheus_client keeps for them, read from its store without taking the metric's lock
    (it creates and stores a child only once per label set); `labels` when there is none yet,
    or none any more (after `remove` or `clear`)."""
    existing = cast("M | None", metric._metrics.get(labelvalues))
    return existing if existing is not None else metric.labels(*labelvalues)


ScrapeCollector = Callable[[], Iterable[Metric]]
_collectors: list[ScrapeCollector] = []


def register_collector(collect: ScrapeCollector) -> None:
    """Add figures read at scrape time (from the database: shared by every process)."""
    if collect not in _collectors:
        _collectors.append(collect)


class _ScrapeTime(Collector):
    def collect(self) -> Iterable[Metric]:
        for collect in _collectors:
            yield from collect()


def exposition() -> bytes:
    """The text exposition format: this node's counters (summed over its processes in
    multiprocess mode), then the scrape-time figures."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
        counters = generate_latest(processes)
    else:
        counters = generate_latest(REGISTRY)
    shared = CollectorRegistry()
    shared.register(_ScrapeTime())
    return counters + generate_latest(shared)
