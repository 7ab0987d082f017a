"""Load with no lost writes (issue 16): many residents at once against the production server.

Two granian web nodes and two outbox workers (which run the ledger sequencer) on a fresh
PostgreSQL database and Redis (tests/ops/cluster.py); `tests/ops/load_mix.py` runs the
residents: sign-in, authorization with PKCE and code exchange, refresh with rotation,
userinfo, consent decisions in Mon compte, the cookie widget's choices, privacy-centre pages,
each request to a node picked at random. Then:

- no answer was a server error (5xx), and no answer was other than the flow expects;
- every consent event acknowledged to a client (the cookie API's `receipt_ids`, the new
  "Référence" on the consents page after a decision) is in the ledger, under that id;
- once the sequencer has integrated what is pending, `manage.py verify_ledger` passes and
  covers every event.

Profiles (OPS_PROFILE): `full` (default) 200 clients for 60 s; `short` 40 clients for 10 s
(.ci/run). OPS_LOAD_CLIENTS and OPS_LOAD_SECONDS override either. The table of rates and
latencies per operation is printed (run with -s to see it; README, "Operations suite").

    .venv/bin/python -m pytest tests/ops/test_load.py --ops -s
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ops.cluster import Cluster
from tests.ops.load_mix import PARTNER_ORIGIN, REDIRECT_URI, MixConfig, MixResult, run_mix

pytestmark = [pytest.mark.ops]

PROFILES = {"full": (200, 60.0), "short": (40, 10.0)}


def profile() -> tuple[int, float]:
    clients, seconds = PROFILES[os.environ.get("OPS_PROFILE", "full")]
    return int(os.environ.get("OPS_LOAD_CLIENTS", clients)), float(
        os.environ.get("OPS_LOAD_SECONDS", seconds)
    )


def cpu_seconds(processes: list[Any]) -> float:
    """User + system CPU time of these processes' groups (a granian master and its worker)."""
    groups = {process.pid for process in processes if process is not None}
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) in groups:  # pgrp: each process was started in its own session
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


@pytest.fixture(scope="module")
def loaded() -> Any:
    clients, seconds = profile()
    with Cluster(webs=2, workers=2, name="load") as cluster:
        code = cluster.register_client(
            "--name", "Service interne (charge)", "--internal",
            "--grant", "authorization_code", "--redirect-uri", REDIRECT_URI,
            "--scope", "openid", "--scope", "profile", "--scope", "email",
        )  # fmt: skip
        widget = cluster.register_client(
            "--name", "Site partenaire (charge)", "--grant", "client_credentials",
            "--allowed-origin", PARTNER_ORIGIN,
        )  # fmt: skip
        config_answer = cluster.client(0).get(
            "/consent/api/v1/cookie/config", params={"client_id": widget["client_id"]}
        )
        assert config_answer.status_code == 200, config_answer.text
        cookie_purposes = [
            p["code"] for p in config_answer.json()["purposes"] if p.get("requires_consent", True)
        ]
        assert cookie_purposes, config_answer.json()
        password = "Charge-" + secrets.token_urlsafe(18)
        run = secrets.token_hex(3)
        residents = [f"load-{run}-{index}@ops.example" for index in range(clients)]
        cluster.import_residents(residents, password)
        config = MixConfig(
            base_urls=cluster.urls,
            residents=residents,
            password=password,
            code_client_id=code["client_id"],
            code_client_secret=code["client_secret"],
            widget_client_id=widget["client_id"],
            cookie_purposes=cookie_purposes,
            duration=seconds,
        )
        web_cpu, worker_cpu = cpu_seconds(cluster.webs), cpu_seconds(cluster.workers)
        own_cpu, load_before = time.process_time(), os.getloadavg()[0]
        result = asyncio.run(run_mix(config))
        web_cpu, worker_cpu = cpu_seconds(cluster.webs) - web_cpu, cpu_seconds(cluster.workers) - worker_cpu
        own_cpu = time.process_time() - own_cpu
        print(f"\n\nOperations suite, load (OPS_PROFILE={os.environ.get('OPS_PROFILE', 'full')}):\n")
        print(result.table())
        rate = result.requests / max(web_cpu, 1e-9)
        print(
            f"CPU during the run: web nodes {web_cpu:.1f} s ({rate:.0f} requests per web CPU-second), "
            f"outbox workers {worker_cpu:.1f} s, load generator {own_cpu:.1f} s; {os.cpu_count()} cores, "
            f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after."
        )
        for sample in result.samples:
            print("  sample:", sample)
        yield cluster, result


def test_no_server_error_and_every_answer_as_the_flow_expects(loaded: tuple[Cluster, MixResult]) -> None:
    cluster, result = loaded
    assert not result.server_errors, (result.server_errors, result.samples, cluster.log("web0")[-3000:])
    assert not result.errors, (result.errors, result.samples)
    # Every operation of the mix ran, and consent events were written under load.
    assert all(result.latencies.get(name) for name in ("signin", "authorize_token", "refresh", "userinfo"))
    assert all(
        result.latencies.get(name) for name in ("consent_decision", "cookie_choices", "privacy_centre")
    )


def test_every_acknowledged_consent_event_is_in_the_ledger(loaded: tuple[Cluster, MixResult]) -> None:
    cluster, result = loaded
    acknowledged = sorted(result.acknowledged)
    assert acknowledged
    found = {
        str(row[0])
        for row in cluster.sql(
            "SELECT id FROM consent_ledgerevent WHERE id = ANY(%s::uuid[])", (acknowledged,)
        )
    }
    missing = [event_id for event_id in acknowledged if event_id not in found]
    assert not missing, f"{len(missing)} acknowledged events not in the ledger, e.g. {missing[:5]}"


def test_the_ledger_verifies_once_the_sequencer_has_caught_up(loaded: tuple[Cluster, MixResult]) -> None:
    cluster, result = loaded
    total = cluster.sql("SELECT count(*) FROM consent_ledgerevent")[0][0]
    assert total >= len(result.acknowledged)
    # The outbox workers run the sequencer; wait for it to integrate what the load appended.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        integrated = cluster.sql("SELECT size FROM consent_ledgerhead")[0][0]
        if integrated == total:
            break
        time.sleep(0.5)
    verified = json.loads(cluster.manage("verify_ledger", "--json").stdout.strip().splitlines()[-1])
    assert verified["ok"], verified
    assert verified["size"] == total
    assert verified["pending"] == 0, verified
    assert verified["tree_heads_checked"] >= 1
