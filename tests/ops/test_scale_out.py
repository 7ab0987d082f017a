"""Scale-out, proven (issue 16): two web nodes and two outbox workers behave as one service.

Two granian processes (ports of their own) and two `manage.py outbox_worker` processes,
started as in production by tests/ops/cluster.py, share one PostgreSQL database and one
Redis. Partners are RecordingServer endpoints on real sockets. What one node writes, the
other must see: codes and tokens, revocations, sign-in failure counters, used client
assertions and DPoP proofs (and the DPoP nonces it hands out); and the two workers must
drain the outbox without delivering anything twice.

Run: `pytest tests/ops --ops` (OPS_PROFILE=short: fewer sessions in the drain test).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk, jws, jwt

from tests.local_servers import RecordingServer
from tests.oidc.dpop_keys import DPoPKey
from tests.ops.cluster import ISSUER, Cluster
from tests.ops.flows import basic_auth, code_tokens, internal_partner, introspect, revoke, wait_for

pytestmark = pytest.mark.ops

SHORT = os.environ.get("OPS_PROFILE", "full") == "short"
PASSWORD = "Scale-out-" + secrets.token_urlsafe(12)
RESIDENTS = [f"resident-{i}-{secrets.token_hex(3)}@ops.example" for i in range(8)]
LOGIN_FAILURES_PER_ACCOUNT = 4
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
BCL_KIND = "oidc_backchannel_logout"


@pytest.fixture(scope="module")
def partners() -> Iterator[list[RecordingServer]]:
    servers = [RecordingServer("/backchannel-logout") for _ in range(2)]
    yield servers
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def cluster(partners: list[RecordingServer]) -> Iterator[Cluster]:
    env = {"LOGIN_MAX_FAILURES_PER_ACCOUNT": str(LOGIN_FAILURES_PER_ACCOUNT)}
    # Small batches: the two workers then share the drain instead of one taking it all.
    workers = ("--interval", "0.2", "--batch-size", "5")
    with Cluster(webs=2, workers=2, env=env, worker_args=workers) as running:
        running.import_residents(RESIDENTS, PASSWORD)
        yield running


@pytest.fixture(scope="module")
def clients(cluster: Cluster, partners: list[RecordingServer]) -> list[dict[str, Any]]:
    """The partners' registrations: internal services, resource servers (they introspect),
    each with its back-channel logout endpoint (a RecordingServer)."""
    options = ("--resource-server", "--backchannel-logout-session-required", "--backchannel-logout-uri")
    return [
        internal_partner(cluster, f"Partenaire {i}", *options, server.url)
        for i, server in enumerate(partners)
    ]


def claims_of(raw_jwt: str) -> dict[str, Any]:
    payload = raw_jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def signed_in(cluster: Cluster, node: int, email: str, forwarded_for: str = "127.0.0.1") -> Any:
    web = cluster.client(node, forwarded_for)
    answer = web.sign_in(email, PASSWORD)
    assert answer.status_code == 302, (answer.status_code, answer.text[:300])
    assert is_signed_in(web)
    return web


def is_signed_in(web: Any) -> bool:
    page = web.get("/compte/")
    return page.status_code == 200 and "Se déconnecter" in page.text


def outbox_pending(cluster: Cluster) -> int:
    return int(cluster.sql("SELECT count(*) FROM connectors_outboxmessage WHERE status = 'pending'")[0][0])


def test_token_issued_at_one_node_is_introspected_and_revoked_at_the_other(
    cluster: Cluster, clients: list[dict[str, Any]]
) -> None:
    partner = clients[0]
    at_a = signed_in(cluster, 0, RESIDENTS[0])
    at_b = at_a.with_base(cluster.url(1))
    # The code is issued by A and redeemed at B.
    tokens = code_tokens(at_a, partner, token_web=at_b)
    access = tokens["access_token"]

    for web in (at_a, at_b):
        assert introspect(web, partner, access)["active"] is True
        assert web.get("/userinfo", headers={"Authorization": f"Bearer {access}"}).status_code == 200

    assert revoke(at_b, partner, access) == 200
    for web in (at_a, at_b):
        assert introspect(web, partner, access) == {"active": False}
        refused = web.get("/userinfo", headers={"Authorization": f"Bearer {access}"})
        assert refused.status_code == 401
        assert "invalid_token" in refused.headers["WWW-Authenticate"]

    # Refresh tokens: issued at A, rotated at B, the new one revoked at A and refused at B.
    refresh = code_tokens(at_b, partner, token_web=at_a)["refresh_token"]
    rotated = refresh_at(at_b, partner, refresh)
    assert rotated.status_code == 200, rotated.text
    refresh = rotated.json()["refresh_token"]
    assert revoke(at_a, partner, refresh, hint="refresh_token") == 200
    refused = refresh_at(at_b, partner, refresh)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def refresh_at(web: Any, partner: dict[str, Any], refresh_token: str) -> Any:
    return web.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers={"Authorization": basic_auth(partner["client_id"], partner["client_secret"])},
    )


def verify_logout_token(raw: str, client_id: str, jwks: str) -> dict[str, Any]:
    parsed = jws.JWS()
    parsed.deserialize(raw)
    assert parsed.jose_header["typ"] == "logout+jwt"
    token = jwt.JWT(jwt=raw, key=jwk.JWKSet.from_json(jwks), check_claims={"aud": client_id, "exp": None})
    claims = dict(json.loads(token.claims))
    assert claims["iss"] == ISSUER and claims["events"] == {LOGOUT_EVENT: {}}
    return claims


def test_logout_at_one_node_reaches_each_partner_exactly_once(
    cluster: Cluster, partners: list[RecordingServer], clients: list[dict[str, Any]]
) -> None:
    first, second = clients
    at_a = signed_in(cluster, 0, RESIDENTS[1])
    at_b = at_a.with_base(cluster.url(1))
    sid = claims_of(code_tokens(at_a, first)["id_token"])["sid"]
    assert claims_of(code_tokens(at_b, second)["id_token"])["sid"] == sid  # one browser session
    before = [len(server.received) for server in partners]

    assert at_a.csrf_post("/deconnexion/", {}).status_code == 302
    assert not is_signed_in(at_b)  # signed out at B too

    def delivered() -> bool:
        rows = cluster.sql(
            "SELECT count(*) FROM connectors_outboxmessage WHERE kind = %s AND payload->>'sid' = %s "
            "AND status = 'delivered'",
            (BCL_KIND, sid),
        )
        return int(rows[0][0]) == 2

    wait_for(delivered, 60, "the two back-channel logouts to be delivered")
    time.sleep(1)  # a few more polls of both workers: a second delivery would show now
    jwks = cluster.client(1).get("/jwks.json").text
    for server, partner, seen in zip(partners, (first, second), before, strict=True):
        mine = [
            claims
            for entry in server.received[seen:]
            if (claims := claims_of(entry["fields"]["logout_token"]))["sid"] == sid
        ]
        assert len(mine) == 1, f"{partner['client_id']} received {len(mine)} logout tokens"
        verified = verify_logout_token(
            next(e for e in server.received[seen:] if claims_of(e["fields"]["logout_token"])["sid"] == sid)[
                "fields"
            ]["logout_token"],
            partner["client_id"],
            jwks,
        )
        assert verified["sid"] == sid


def test_sign_in_failures_at_one_node_count_at_the_other(cluster: Cluster) -> None:
    email = RESIDENTS[2]
    address = f"198.51.100.{secrets.randbelow(250) + 1}"
    a, b = cluster.client(0, address), cluster.client(1, address)
    # Failures alternate between the nodes: neither alone sees enough of them to lock.
    nodes = [a, b] * LOGIN_FAILURES_PER_ACCOUNT
    for web in nodes[: LOGIN_FAILURES_PER_ACCOUNT - 1]:
        failed = web.sign_in(email, "Wrong-password-123")
        assert failed.status_code == 200
        assert "Trop de tentatives" not in failed.text
    # The failure that reaches the shared count locks the account…
    last = nodes[LOGIN_FAILURES_PER_ACCOUNT - 1].sign_in(email, "Wrong-password-123")
    assert "Trop de tentatives" in last.text
    # …at both nodes, even for the right password.
    for web in (b, a):
        blocked = web.sign_in(email, PASSWORD)
        assert blocked.status_code == 200, "signed in although the account is locked"
        assert "Trop de tentatives" in blocked.text
    # Another account from another address is not affected.
    assert is_signed_in(signed_in(cluster, 1, RESIDENTS[3], "198.51.100.251"))


@pytest.fixture(scope="module")
def machine_key() -> jwk.JWK:
    return jwk.JWK.generate(kty="EC", crv="P-256")


def client_assertion(client_id: str, key: jwk.JWK) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": ISSUER, "iat": now, "exp": now + 60}
    claims["jti"] = str(uuid.uuid4())
    token = jwt.JWT(header={"alg": "ES256", "kid": key.thumbprint()}, claims=claims)
    token.make_signed_token(key)
    return str(token.serialize())


def test_client_assertion_used_at_one_node_is_refused_at_the_other(
    cluster: Cluster, machine_key: jwk.JWK
) -> None:
    jwks_file = Path(cluster.tmp) / "machine-jwks.json"
    public = dict(json.loads(machine_key.export_public()), kid=machine_key.thumbprint(), use="sig")
    jwks_file.write_text(json.dumps({"keys": [public]}))
    machine = cluster.register_client(
        "--name", "Passerelle", "--grant", "client_credentials", "--auth-method", "private_key_jwt",
        "--jwks-file", str(jwks_file),
    )  # fmt: skip

    def token_request(node: int, assertion: str) -> Any:
        return cluster.client(node).post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )

    for first, second in ((0, 1), (1, 0)):
        assertion = client_assertion(machine["client_id"], machine_key)
        assert token_request(first, assertion).status_code == 200
        replay = token_request(second, assertion)
        assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


def test_dpop_proof_used_at_one_node_is_refused_at_the_other(cluster: Cluster) -> None:
    """RFC 9449: the nonce one node hands out is good at the other (stateless), and a proof's
    jti recorded at one node (the replay cache, in Redis) is a replay at the other."""
    machine = cluster.register_client("--name", "Machine DPoP", "--grant", "client_credentials")
    key = DPoPKey()
    htu = ISSUER + "/token"
    authorization = {"Authorization": basic_auth(machine["client_id"], machine["client_secret"])}

    def token_request(node: int, proof: str) -> Any:
        headers = {**authorization, "DPoP": proof}
        return cluster.client(node).post("/token", data={"grant_type": "client_credentials"}, headers=headers)

    asked = token_request(1, key.proof("POST", htu))
    assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce"
    nonce = asked.headers["DPoP-Nonce"]  # from node B…
    for first, second in ((0, 1), (1, 0)):
        proof = key.proof("POST", htu, nonce=nonce)
        issued = token_request(first, proof)  # …accepted at node A
        assert issued.status_code == 200, issued.text
        assert issued.json()["token_type"] == "DPoP"
        replay = token_request(second, proof)
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_dpop_proof"


def test_two_workers_drain_the_outbox_without_double_delivery(
    cluster: Cluster, partners: list[RecordingServer], clients: list[dict[str, Any]]
) -> None:
    sessions = 12 if SHORT else 60
    for i in range(2):
        cluster.stop_worker(i)
    for server in partners:
        server.delay = 0.05  # a partner that takes its time: both workers get work
    before = [len(server.received) for server in partners]
    emails_before = len(cluster.smtp.messages)
    first, second = clients
    sids = set()
    for n in range(sessions):
        web = signed_in(cluster, n % 2, RESIDENTS[4 + n % 4])
        sid = claims_of(code_tokens(web, first)["id_token"])["sid"]
        code_tokens(web.with_base(cluster.url((n + 1) % 2)), second)
        assert web.with_base(cluster.url((n + 1) % 2)).csrf_post("/deconnexion/", {}).status_code == 302
        sids.add(sid)
    assert len(sids) == sessions
    queued = cluster.sql(
        "SELECT count(*) FROM connectors_outboxmessage WHERE kind = %s AND payload->>'sid' = ANY(%s)",
        (BCL_KIND, list(sids)),
    )[0][0]
    assert queued == 2 * sessions
    emails = cluster.sql(
        "SELECT count(*) FROM connectors_outboxmessage WHERE kind = 'email' AND status = 'pending'"
    )
    for i in range(2):
        cluster.start_worker(i)
    try:
        wait_for(lambda: outbox_pending(cluster) == 0, 240, "the outbox to be drained")
        time.sleep(1.5)  # more polls by both workers: a second delivery would show now
    finally:
        for server in partners:
            server.delay = 0

    for server, partner, seen in zip(partners, (first, second), before, strict=True):
        tokens = [claims_of(entry["fields"]["logout_token"]) for entry in server.received[seen:]]
        mine = [claims for claims in tokens if claims["sid"] in sids]
        assert len(mine) == sessions, f"{partner['client_id']}: {len(mine)} deliveries for {sessions} logouts"
        assert {claims["sid"] for claims in mine} == sids
        assert len({claims["jti"] for claims in mine}) == sessions  # no message delivered twice
    rows = cluster.sql(
        "SELECT status, count(*) FROM connectors_outboxmessage WHERE kind = %s AND payload->>'sid' = ANY(%s) "
        "GROUP BY status",
        (BCL_KIND, list(sids)),
    )
    assert dict(rows) == {"delivered": 2 * sessions}
    # Residents' emails (new-device notices) went through the same workers, once each.
    assert len(cluster.smtp.messages) - emails_before == emails[0][0]
    # Both workers took part.
    for i in range(2):
        delivered = sum(
            int(part.split("=")[1])
            for line in cluster.log(f"worker{i}").splitlines()
            for part in line.split()
            if part.startswith("delivered=")
        )
        assert delivered > 0, f"worker {i} delivered nothing:\n{cluster.log(f'worker{i}')[-2000:]}"
