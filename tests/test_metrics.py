"""Prometheus metrics (issue 16, "Observability"): common/metrics.py, config/metrics_view.py,
the scrape-time collectors of consent and connectors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from common import metrics
from connectors.models import OutboxMessage, WorkerHeartbeat
from consent.models import LedgerHead, LedgerSequence
from consent.services import consent_record, tree_head_sign
from tests.conftest import PASSWORD
from tests.connectors.conftest import database_url_of_test_db

pytestmark = pytest.mark.django_db

TOKEN = "m" * 40
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def scrape(client: Client, settings: Any) -> Any:
    settings.METRICS_TOKEN = TOKEN

    def get() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        samples = {}
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    return get


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_do_not_exist_without_a_token(client: Client, settings: Any):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_metrics_need_the_scrapers_token(client: Client, settings: Any, header: str | None):
    settings.METRICS_TOKEN = TOKEN
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"cum_" not in response.content


def test_requests_are_counted_by_route_method_and_status(client: Client, scrape: Any):
    labels = {"route": "/connexion/", "method": "GET", "status": "200"}
    before = value("cum_http_requests_total", **labels)
    latency_before = value("cum_http_request_duration_seconds_count", route="/connexion/")
    client.get("/connexion/")
    client.get("/connexion/")
    client.generic("BREW", "/connexion/")  # unknown methods share one label
    assert value("cum_http_requests_total", **labels) == before + 2
    assert value("cum_http_request_duration_seconds_count", route="/connexion/") == latency_before + 3
    assert value("cum_http_requests_total", route="/connexion/", method="other", status="405") >= 1
    samples = scrape()
    assert samples[("cum_http_requests_total", tuple(sorted(labels.items())))] >= before + 2


def test_sign_ins_failures_and_rate_limit_refusals_are_counted(
    client: Client, resident: Any, make_resident: Any, settings: Any
):
    settings.LOGIN_RATE_LIMIT = {**settings.LOGIN_RATE_LIMIT, "per_account": 2}
    failed = value("cum_signins_total", method="password", outcome="failed")
    refused = value("cum_rate_limit_refusals_total", scope="account")
    for _ in range(4):
        client.post("/connexion/", {"username": resident.email, "password": "not-" + PASSWORD})
    assert value("cum_signins_total", method="password", outcome="failed") - failed >= 2
    succeeded = value("cum_signins_total", method="password", outcome="succeeded")
    other = make_resident("dominique@example.org")  # the first account is locked now
    assert Client().post("/connexion/", {"username": other.email, "password": PASSWORD}).status_code == 302
    assert value("cum_signins_total", method="password", outcome="succeeded") == succeeded + 1
    assert value("cum_rate_limit_refusals_total", scope="account") > refused
    assert value("cum_audit_events_total", event="login.failed") >= 2


def test_outbox_depth_age_failures_and_dead_letters_per_partner(scrape: Any):
    old = timezone.now() - timedelta(minutes=30)
    for index, (status, attempts) in enumerate(
        [("pending", 0), ("pending", 3), ("dead", 12), ("delivered", 1)]
    ):
        row = OutboxMessage.objects.create(
            kind="test",
            destination="x",
            partner="naolib",
            idempotency_key=f"k{index}",
            status=status,
            attempts=attempts,
        )
        OutboxMessage.objects.filter(pk=row.pk).update(created_at=old)
    OutboxMessage.objects.create(kind="email", destination="smtp", idempotency_key="mail-1")
    samples = scrape()
    naolib = (("partner", "naolib"),)
    assert samples[("cum_outbox_pending", naolib)] == 2
    assert samples[("cum_outbox_failing", naolib)] == 1
    assert samples[("cum_outbox_dead", naolib)] == 1
    assert samples[("cum_outbox_oldest_pending_age_seconds", naolib)] >= 30 * 60
    assert samples[("cum_outbox_pending", (("partner", "(none)"),))] == 1


def test_worker_heartbeats_are_exposed(scrape: Any):
    assert ("cum_outbox_worker_heartbeat_age_seconds", ()) not in scrape()
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="h:1", started_at=now, beat_at=now - timedelta(seconds=42))
    samples = scrape()
    assert samples[("cum_outbox_workers", ())] == 1
    assert samples[("cum_outbox_worker_heartbeat_age_seconds", ())] >= 42


def test_ledger_size_and_signed_tree_head_age(scrape: Any, resident: Any, signing_keys: Any):
    consent_record(
        purpose_code="service-news-email", event_type="given", collection_method="web_form", user=resident
    )
    tree_head_sign()
    consent_record(
        purpose_code="service-news-email", event_type="withdrawn", collection_method="web_form", user=resident
    )
    samples = scrape()
    size = LedgerSequence.objects.get().next_seq  # events appended
    assert size >= 2 and LedgerHead.objects.get().size == size - 1  # the last one pending
    assert samples[("cum_ledger_events", ())] == size
    assert samples[("cum_ledger_pending_events", ())] == 1
    assert samples[("cum_ledger_unsigned_events", ())] == 1
    assert 0 <= samples[("cum_ledger_signed_tree_head_age_seconds", ())] < 60


@pytest.mark.django_db(transaction=True)
def test_several_processes_of_one_node_are_summed(tmp_path: Path):
    # granian --workers N: each process writes its values to PROMETHEUS_MULTIPROC_DIR and
    # a scrape (in any of them) sums them; the database's figures come once, from the scrape.
    env = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url_of_test_db(),
    }
    bump = (
        "import django; django.setup(); from common import metrics; "
        "metrics.TOKENS_ISSUED.labels('refresh_token').inc(3)"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", bump], cwd=ROOT, env=env, check=True, timeout=60)
    show = "from common import metrics; import sys; sys.stdout.write(metrics.exposition().decode())"
    scrape = "import django; django.setup(); " + show
    result = subprocess.run(
        [sys.executable, "-c", scrape], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert 'cum_tokens_issued_total{grant_type="refresh_token"} 6.0' in result.stdout
    assert result.stdout.count("# TYPE cum_ledger_events gauge") == 1


def test_the_grafana_dashboard_only_plots_metrics_we_expose(resident: Any, signing_keys: Any):
    # docs/grafana-dashboard.json: every metric an expression names is one we expose.
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    # Data for every scrape-time series: a signed tree head, a worker, waiting and dead messages.
    consent_record(
        purpose_code="service-news-email", event_type="given", collection_method="web_form", user=resident
    )
    tree_head_sign()
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="h:1", started_at=now, beat_at=now)
    OutboxMessage.objects.create(kind="t", destination="x", partner="p", idempotency_key="a", attempts=1)
    OutboxMessage.objects.create(kind="t", destination="x", partner="p", idempotency_key="b", status="dead")
    exposed = {
        sample.name
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    }
    # Labelled counters have no series before their first increment: their declared names.
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    declared = {
        family.name + suffix
        for value in vars(metrics).values()
        if isinstance(value, Counter | Histogram)
        for family in value.describe()
        for suffix in suffixes[family.type]
    }
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bcum_[a-z_]+", target["expr"])
    }
    assert len(used) >= 15
    assert used <= exposed | declared, used - (exposed | declared)


def test_consent_events_are_counted_once_committed(resident: Any, django_capture_on_commit_callbacks: Any):
    labels = {"type": "given", "purpose": "service-news-email"}
    before = value("cum_consent_events_total", **labels)
    with django_capture_on_commit_callbacks(execute=True):
        consent_record(
            purpose_code="service-news-email", event_type="given", collection_method="web_form", user=resident
        )
    assert value("cum_consent_events_total", **labels) == before + 1


def test_tokens_issued_are_counted_by_grant(flow: Any):
    before = value("cum_tokens_issued_total", grant_type="authorization_code")
    code = flow.get_code()
    assert flow.token(code).status_code == 200
    assert flow.token(code).status_code == 400  # a replay issues nothing
    assert value("cum_tokens_issued_total", grant_type="authorization_code") == before + 1
