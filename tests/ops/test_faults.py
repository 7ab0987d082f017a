"""Faults survived with nothing lost (issue 16), on real processes (tests/ops/cluster.py).

- A web process killed with SIGKILL in the middle of traffic, first one granian worker
  (respawned by its master), then the whole node: no half-written consent event or outbox
  row (the ledger verifies, every outbox row is whole and delivered), and clients recover
  by retrying at the other node, then at the restarted one.
- PostgreSQL restarted (a private cluster, crashed with `pg_ctl -m immediate`): /readyz
  fails while it is down, then recovers; nothing acknowledged before is lost.
- Redis stopped (a private redis-server): the decision of docs/operators.md, "When Redis or
  PostgreSQL is down": browser pages fail closed with a readable 503 page (sign-in needs
  the shared rate-limit counters), the token endpoint keeps serving partners, and everything
  works again when Redis is back, sessions included.
- A partner down for a while (short retry settings): its deliveries complete after it returns.

Run: `pytest tests/ops --ops` (OPS_PROFILE=short shortens the traffic and the partner's outage).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.local_servers import RecordingServer
from tests.ops.cluster import Cluster, PrivatePostgres, PrivateRedis, WebClient
from tests.ops.flows import basic_auth, code_tokens, internal_partner, wait_for

pytestmark = pytest.mark.ops

SHORT = os.environ.get("OPS_PROFILE", "full") == "short"
PASSWORD = "Faults-" + secrets.token_urlsafe(12)
PURPOSE = "personalisation-declared"  # a purpose residents grant and withdraw themselves
BCL_KIND = "oidc_backchannel_logout"


def residents(count: int) -> list[str]:
    return [f"resident-{i}-{secrets.token_hex(3)}@faults.example" for i in range(count)]


def readyz(cluster: Cluster, node: int) -> int:
    try:
        return int(cluster.client(node).get("/readyz", timeout=5).status_code)
    except requests.RequestException:
        return 0


def decide(web: WebClient, grant: bool) -> requests.Response:
    return web.csrf_post(
        f"/compte/consentements/{PURPOSE}/decision/", {"decision": "grant" if grant else "withdraw"}
    )


def ledger_decisions(cluster: Cluster) -> int:
    rows = cluster.sql(
        "SELECT count(*) FROM consent_ledgerevent "
        "WHERE purpose_code = %s AND event_type IN ('given', 'withdrawn')",
        (PURPOSE,),
    )
    return int(rows[0][0])


def ledger_verifies(cluster: Cluster) -> dict[str, Any]:
    cluster.manage("sign_tree_head")
    result = cluster.manage("verify_ledger", "--json", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = dict(json.loads(result.stdout.strip().splitlines()[-1]))
    assert verdict["ok"] is True and verdict["pending"] == 0, verdict
    return verdict


def outbox_rows_whole(cluster: Cluster) -> list[tuple[Any, ...]]:
    rows = cluster.sql(
        "SELECT kind, destination, idempotency_key, payload, status "
        "FROM connectors_outboxmessage ORDER BY created_at"
    )
    for kind, destination, key, payload, _status in rows:
        assert kind and destination and key, (kind, destination, key)
        assert isinstance(payload, dict)
        if kind == BCL_KIND:
            assert all(payload.get(name) for name in ("client_id", "sub", "sid", "jti")), payload
    return rows


def all_delivered(cluster: Cluster) -> bool:
    rows = cluster.sql("SELECT status, count(*) FROM connectors_outboxmessage GROUP BY status")
    return set(dict(rows)) <= {"delivered"}


@pytest.fixture
def partner_server() -> Iterator[RecordingServer]:
    server = RecordingServer("/backchannel-logout")
    yield server
    server.close()


# --- SIGKILL of a web process during traffic ----------------------------------------------------


class Resident(threading.Thread):
    """Signs in, then alternates consent decisions and sign-out/sign-in cycles (with a partner's
    tokens, so that each sign-out queues a back-channel logout), on its preferred node; when a
    request fails (connection refused or cut), retries it at the other node."""

    def __init__(self, cluster: Cluster, email: str, partner: dict[str, Any], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cluster, self.email, self.partner, self.stop_event = cluster, email, partner, stop
        self.node = 0
        self.web = cluster.client(0, f"203.0.113.{secrets.randbelow(250) + 1}")
        self.acknowledged = 0  # consent decisions answered (302), each one ledger event
        self.unanswered = 0  # requests whose answer was lost with the process (then retried)
        self.recovered_after_kill = 0
        self.errors: list[str] = []
        self.kill_seen = threading.Event()
        self.granted = False

    def _other_node(self) -> None:
        self.node = 1 - self.node
        self.web = self.web.with_base(self.cluster.url(self.node))

    def _call(self, action: Any) -> Any:
        for _attempt in range(6):
            try:
                return action()
            except requests.RequestException:
                self.kill_seen.set()
                self._other_node()
        raise AssertionError("no node answered")

    def run(self) -> None:
        try:
            self._call(lambda: self._signed_in())
            n = 0
            while not self.stop_event.is_set():
                n += 1
                if n % 4 == 0:
                    self._call(lambda: code_tokens(self.web, self.partner))
                    self._call(lambda: self._expect(self.web.csrf_post("/deconnexion/", {}), 302))
                    self._call(lambda: self._signed_in())
                else:
                    self._decide()
                if self.kill_seen.is_set():
                    self.recovered_after_kill += 1
        except Exception as exc:  # reported by the test, not lost in the thread
            self.errors.append(repr(exc))

    def _signed_in(self) -> None:
        self._expect(self.web.sign_in(self.email, PASSWORD), 302)

    def _decide(self) -> None:
        """A decision, retried at the other node with the same choice when its answer is lost
        with the process: the pair then makes exactly one ledger event (recorded by the lost
        request or by the retry, never both: the second finds it already recorded)."""
        wanted = not self.granted
        for _attempt in range(6):
            try:
                answer = decide(self.web, wanted)
            except requests.RequestException:
                self.unanswered += 1
                self.kill_seen.set()
                self._other_node()
                continue
            self._expect(answer, 302)
            self.acknowledged += 1
            self.granted = wanted
            return
        raise AssertionError("no node answered")

    @staticmethod
    def _expect(answer: requests.Response, status: int) -> None:
        assert answer.status_code == status, (answer.status_code, answer.url, answer.text[:300])


def test_sigkill_of_a_web_process_during_traffic_loses_nothing(partner_server: RecordingServer) -> None:
    emails = residents(4)
    worker_args = ("--interval", "0.2")
    with Cluster(webs=2, workers=1, worker_args=worker_args, name="sigkill") as cluster:
        cluster.import_residents(emails, PASSWORD)
        partner = internal_partner(cluster, "Partenaire", "--backchannel-logout-uri", partner_server.url)
        stop = threading.Event()
        threads = [Resident(cluster, email, partner, stop) for email in emails]
        for thread in threads:
            thread.start()
        time.sleep(2 if SHORT else 6)
        # A granian worker dies; its master respawns it on the same port.
        killed = cluster.kill_web_worker(0)
        cluster.wait_ready(0)
        assert killed not in cluster.web_worker_pids(0) and cluster.web_worker_pids(0)
        time.sleep(2 if SHORT else 6)
        cluster.kill_web(0)  # then the whole node: master and worker
        time.sleep(2 if SHORT else 6)
        cluster.start_web(0)
        for thread in threads:  # back to the restarted node
            thread.node = 1
            thread._other_node()
        time.sleep(2 if SHORT else 6)
        stop.set()
        for thread in threads:
            thread.join(60)

        assert [t.errors for t in threads] == [[]] * len(threads)
        assert all(t.kill_seen.is_set() and t.recovered_after_kill > 0 for t in threads)
        acknowledged = sum(t.acknowledged for t in threads)
        assert acknowledged > 0
        # Every acknowledged decision is in the ledger, once; one whose answer died with the
        # process was there entirely or not at all (its retry tells), and the ledger verifies.
        assert ledger_decisions(cluster) == acknowledged
        wait_for(lambda: all_delivered(cluster), 120, "the outbox to be delivered")
        ledger_verifies(cluster)
        rows = outbox_rows_whole(cluster)
        logouts = [payload for kind, _d, _k, payload, _s in rows if kind == BCL_KIND]
        assert logouts, "no sign-out queued a back-channel logout"
        received = [entry["fields"].get("logout_token") for entry in partner_server.received]
        assert len(received) == len(logouts)


# --- PostgreSQL restarted -------------------------------------------------------------------------


def test_postgresql_restart_readiness_fails_then_recovers_and_nothing_acknowledged_is_lost(
    partner_server: RecordingServer,
) -> None:
    emails = residents(2)
    with (
        PrivatePostgres() as postgres,
        Cluster(webs=2, workers=1, postgres=postgres, name="pgrestart") as cluster,
    ):
        cluster.import_residents(emails, PASSWORD)
        partner = internal_partner(cluster, "Partenaire", "--backchannel-logout-uri", partner_server.url)
        webs = [cluster.client(node) for node in (0, 1)]
        for web, email in zip(webs, emails, strict=True):
            assert web.sign_in(email, PASSWORD).status_code == 302
        acknowledged = 0
        for web in webs:
            for grant in (True, False, True):
                assert decide(web, grant).status_code == 302
                acknowledged += 1
        assert ledger_decisions(cluster) == acknowledged

        postgres.stop(mode="immediate")  # a crash: no checkpoint, recovery from the WAL
        try:
            for node in (0, 1):
                assert readyz(cluster, node) == 503
                page = webs[node].get("/compte/consentements/")
                assert page.status_code == 503, page.status_code
                assert "Service momentanément indisponible" in page.text
        finally:
            postgres.start()

        wait_for(
            lambda: readyz(cluster, 0) == 200 and readyz(cluster, 1) == 200, 60, "readiness after the restart"
        )
        assert ledger_decisions(cluster) == acknowledged
        for web in webs:  # sessions survived, and writing works again
            assert decide(web, False).status_code == 302
        assert ledger_decisions(cluster) == acknowledged + 2
        # The outbox worker lived through the outage: a sign-out now reaches the partner.
        code_tokens(webs[0], partner)
        assert webs[0].csrf_post("/deconnexion/", {}).status_code == 302
        wait_for(lambda: len(partner_server.received) == 1, 60, "the back-channel logout after the restart")
        assert cluster.workers[0] is not None and cluster.workers[0].poll() is None
        wait_for(lambda: all_delivered(cluster), 60, "the outbox to be delivered")
        ledger_verifies(cluster)


# --- Redis stopped ----------------------------------------------------------------------------------


def test_redis_down_fails_closed_with_a_readable_page_then_recovers() -> None:
    emails = residents(2)
    with (
        PrivateRedis() as redis_server,
        Cluster(webs=2, workers=1, redis=redis_server, name="redis") as cluster,
    ):
        cluster.import_residents(emails, PASSWORD)
        machine = cluster.register_client("--name", "Machine", "--grant", "client_credentials")
        signed_in = cluster.client(0)
        assert signed_in.sign_in(emails[0], PASSWORD).status_code == 302

        redis_server.stop()
        try:
            for node in (0, 1):
                assert readyz(cluster, node) == 503
                newcomer = cluster.client(node)
                refused = newcomer.sign_in(emails[1], PASSWORD)
                assert refused.status_code == 503
                assert refused.headers["Retry-After"]
                assert "Service momentanément indisponible" in refused.text
                page = signed_in.with_base(cluster.url(node)).get("/compte/")
                assert page.status_code == 503 and "Service momentanément indisponible" in page.text
                # Partners' back-ends do not need Redis: the token endpoint keeps serving.
                token = cluster.client(node).post(
                    "/token",
                    data={"grant_type": "client_credentials"},
                    headers={"Authorization": basic_auth(machine["client_id"], machine["client_secret"])},
                )
                assert token.status_code == 200, token.text
        finally:
            redis_server.start()

        for node in (0, 1):
            wait_for(lambda node=node: readyz(cluster, node) == 200, 30, "readiness with Redis back")
            page = signed_in.with_base(cluster.url(node)).get("/compte/")
            assert page.status_code == 200 and "Se déconnecter" in page.text  # still signed in
        assert cluster.client(1).sign_in(emails[1], PASSWORD).status_code == 302


# --- A partner down for a while -------------------------------------------------------------------


def test_partner_down_for_a_while_gets_its_deliveries_after_it_returns(
    partner_server: RecordingServer,
) -> None:
    # Twelve attempts before a message is given up: with these delays they span more than
    # the outage (at least half of 1+2+4×9 s, or of 1+2+4+8+16+32+60×5 s).
    outage, longest_wait = (12, 4) if SHORT else (150, 60)
    sessions = 5
    env = {"OUTBOX_RETRY_BASE_SECONDS": "1", "OUTBOX_RETRY_MAX_SECONDS": str(longest_wait)}
    emails = residents(1)
    with Cluster(webs=1, workers=1, env=env, name="partner") as cluster:
        cluster.import_residents(emails, PASSWORD)
        partner = internal_partner(cluster, "Partenaire", "--backchannel-logout-uri", partner_server.url)
        port = partner_server.port
        partner_server.close()  # nothing listens on its port now
        started = time.monotonic()
        for _ in range(sessions):
            web = cluster.client(0)
            assert web.sign_in(emails[0], PASSWORD).status_code == 302
            code_tokens(web, partner)
            assert web.csrf_post("/deconnexion/", {}).status_code == 302

        def failed_attempts() -> int:
            rows = cluster.sql(
                "SELECT min(attempts) FROM connectors_outboxmessage WHERE kind = %s AND status = 'pending'",
                (BCL_KIND,),
            )
            return int(rows[0][0] or 0)

        wait_for(lambda: failed_attempts() >= 2, 60, "failed attempts while the partner is down")
        time.sleep(max(0.0, outage - (time.monotonic() - started)))
        rows = cluster.sql(
            "SELECT status, count(*) FROM connectors_outboxmessage WHERE kind = %s GROUP BY status",
            (BCL_KIND,),
        )
        assert dict(rows) == {"pending": sessions}  # still waiting, none given up

        back = RecordingServer("/backchannel-logout", port=port)
        try:
            wait_for(
                lambda: len(back.received) >= sessions,
                longest_wait + 30,
                "the deliveries after the partner's return",
            )
            wait_for(lambda: all_delivered(cluster), 30, "the outbox rows to be marked delivered")
            jtis = [entry["fields"]["logout_token"] for entry in back.received]
            assert len(jtis) == sessions
        finally:
            back.close()
