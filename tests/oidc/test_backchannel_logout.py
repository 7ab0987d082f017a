"""OpenID Connect Back-Channel Logout 1.0, received by a relying party on a real local port.

The relying party validates the logout token as §2.6 tells it to: signature by a key of
the OP's published JWKS (`kid`), `iss`, `aud`, `iat`, `exp`, the `events` member, `sub`
and/or `sid`, and no `nonce`. Deliveries are made by a real `manage.py outbox_worker`
process against the test database.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client as BrowserClient
from django.utils import timezone
from jwcrypto import jwk, jws, jwt

from connectors.models import OutboxMessage
from identity.models import BrowserSession
from identity.oidc.backchannel import KIND, LOGOUT_EVENT
from identity.sessions import session_end
from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import RelyingPartyServer, complete_flow, expected_sub, sign_in, userinfo

BYE = "https://rp.example.org/bye"


def validate_logout_token(raw: str, client_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a relying party does with a logout token (Back-Channel Logout §2.6)."""
    parsed = jws.JWS()
    parsed.deserialize(raw)
    header = parsed.jose_header
    assert header["alg"] in {"RS256", "ES256"}  # never "none"
    assert header["typ"] == "logout+jwt"  # §2.4 recommends explicit typing
    keys = jwk.JWKSet.from_json(BrowserClient().get("/jwks.json").content.decode())
    assert keys.get_key(header["kid"]) is not None, "kid not in the published JWKS"
    token = jwt.JWT(jwt=raw, key=keys, algs=["RS256", "ES256"], check_claims={"aud": client_id, "exp": None})
    claims = json.loads(token.claims)
    assert claims["iss"] == settings.ISSUER
    assert claims["aud"] == client_id or client_id in claims["aud"]
    assert isinstance(claims["iat"], int) and claims["iat"] <= time.time() + 5
    assert claims["exp"] > claims["iat"] and claims["exp"] - claims["iat"] <= 300
    assert claims["jti"]
    assert claims["events"] == {LOGOUT_EVENT: {}}
    assert "sub" in claims or "sid" in claims
    assert "nonce" not in claims  # §2.4: a logout token MUST NOT contain a nonce
    return header, claims


def unverified_claims(raw: str) -> dict[str, Any]:
    payload = raw.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def end_session(browser: BrowserClient, id_token: str, **extra: str) -> Any:
    return browser.get(
        "/end-session", {"id_token_hint": id_token, "post_logout_redirect_uri": BYE, "state": "s", **extra}
    )


@pytest.fixture
def bcl_rp(make_client: Any, relying_party: RelyingPartyServer) -> Any:
    return make_client(
        name="Médiathèques",
        post_logout_redirect_uris=[BYE],
        backchannel_logout_uri=relying_party.url,
        backchannel_logout_session_required=True,
    )


def test_discovery_advertises_backchannel_logout_with_sessions(db: Any) -> None:
    metadata = BrowserClient().get("/.well-known/openid-configuration").json()
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True


@pytest.mark.django_db(transaction=True)
def test_rp_initiated_logout_delivers_a_valid_logout_token(
    client: BrowserClient, resident: Any, bcl_rp: Any, relying_party: RelyingPartyServer, run_worker: Any
) -> None:
    sign_in(client, resident.email)
    flow = OIDCFlow(client, bcl_rp)
    tokens = complete_flow(flow)
    id_claims = verify_id_token(tokens["id_token"], bcl_rp.client_id)
    assert id_claims["sid"]

    response = end_session(client, tokens["id_token"])
    assert response.status_code in (302, 303)
    message = OutboxMessage.objects.get(kind=KIND)
    assert message.destination == relying_party.url
    assert relying_party.received == []  # delivered by the relay, never inline

    run_worker("--once")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED
    assert len(relying_party.received) == 1
    request = relying_party.received[0]
    assert request["path"] == "/oidc/backchannel-logout"
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert set(request["fields"]) == {"logout_token"}
    header, claims = validate_logout_token(request["fields"]["logout_token"], bcl_rp.client_id)
    assert header["alg"] == "RS256"
    assert claims["sid"] == id_claims["sid"]
    assert claims["sub"] == id_claims["sub"] == expected_sub(bcl_rp, resident)


@pytest.mark.django_db(transaction=True)
def test_account_sign_out_notifies_every_partner_of_the_session(
    client: BrowserClient, resident: Any, make_client: Any, relying_party: RelyingPartyServer, run_worker: Any
) -> None:
    sign_in(client, resident.email)
    es256 = make_client(name="Transports", backchannel_logout_uri=relying_party.url, signing_alg="ES256")
    plain = make_client(name="Sans back-channel")
    sids = set()
    for partner in (es256, plain):
        tokens = complete_flow(OIDCFlow(client, partner))
        sids.add(verify_id_token(tokens["id_token"], partner.client_id)["sid"])
    assert len(sids) == 1  # one browser session, one sid for every partner

    assert client.post("/deconnexion/").status_code == 302
    assert OutboxMessage.objects.filter(kind=KIND).count() == 1  # only the partner with a URI

    run_worker("--once")
    (request,) = relying_party.received
    header, claims = validate_logout_token(request["fields"]["logout_token"], es256.client_id)
    assert header["alg"] == "ES256"  # the key and algorithm of this client's ID tokens
    assert claims["sid"] == sids.pop()
    assert claims["sub"] == expected_sub(es256, resident)


@pytest.mark.django_db(transaction=True)
def test_partner_down_receives_the_logout_once_it_is_back(
    client: BrowserClient, resident: Any, make_client: Any, run_worker: Any
) -> None:
    down = RelyingPartyServer()
    port, url = down.port, down.url
    down.close()  # nothing listens on the partner's port any more
    partner = make_client(name="Billetterie", backchannel_logout_uri=url)
    sign_in(client, resident.email)
    tokens = complete_flow(OIDCFlow(client, partner))
    sid = verify_id_token(tokens["id_token"], partner.client_id)["sid"]
    client.post("/deconnexion/")

    run_worker("--once")
    message = OutboxMessage.objects.get(kind=KIND)
    assert message.status == OutboxMessage.Status.PENDING
    assert message.attempts == 1
    assert message.next_attempt_at >= message.created_at + timedelta(seconds=2)  # backoff
    assert message.last_error.startswith("unreachable")

    back = RelyingPartyServer(port=port)  # the partner comes back, same address
    try:
        OutboxMessage.objects.filter(pk=message.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        run_worker("--once")
        message.refresh_from_db()
        assert message.status == OutboxMessage.Status.DELIVERED
        assert message.attempts == 2
        (request,) = back.received
        _header, claims = validate_logout_token(request["fields"]["logout_token"], partner.client_id)
        assert claims["sid"] == sid
        # Built when delivered: fresh, not expired by the time spent waiting.
        assert claims["exp"] > time.time()
    finally:
        back.close()


@pytest.mark.django_db(transaction=True)
def test_partner_error_is_retried_with_backoff(
    client: BrowserClient, resident: Any, bcl_rp: Any, relying_party: RelyingPartyServer, run_worker: Any
) -> None:
    relying_party.status = 503
    sign_in(client, resident.email)
    complete_flow(OIDCFlow(client, bcl_rp))
    client.post("/deconnexion/")
    run_worker("--once")
    message = OutboxMessage.objects.get(kind=KIND)
    assert (message.status, message.attempts, message.last_error) == ("pending", 1, "HTTP 503")

    relying_party.status = 200
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    run_worker("--once")
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED
    first, second = (unverified_claims(r["fields"]["logout_token"]) for r in relying_party.received)
    assert first["jti"] == second["jti"]  # one notification, retried: the same jti


def test_notification_is_written_with_the_session_end_or_not_at_all(
    signed_in: BrowserClient, bcl_rp: Any
) -> None:
    complete_flow(OIDCFlow(signed_in, bcl_rp))
    session = BrowserSession.objects.get(ended_at__isnull=True)
    with pytest.raises(RuntimeError), transaction.atomic():
        session_end(session=session, reason="revoked")
        assert OutboxMessage.objects.filter(kind=KIND).count() == 1
        raise RuntimeError("the change failed")
    assert not OutboxMessage.objects.filter(kind=KIND).exists()
    session.refresh_from_db()
    assert session.ended_at is None


def test_one_notification_per_session_and_partner(signed_in: BrowserClient, bcl_rp: Any) -> None:
    flow = OIDCFlow(signed_in, bcl_rp)
    complete_flow(flow)
    complete_flow(OIDCFlow(signed_in, bcl_rp))  # the same partner again in the same session
    session = BrowserSession.objects.get(ended_at__isnull=True)
    session_end(session=session, reason="revoked")
    session_end(session=session, reason="revoked")  # idempotent
    (message,) = OutboxMessage.objects.filter(kind=KIND)
    assert message.idempotency_key == f"oidc-bcl:{session.sid}:{bcl_rp.client_id}"
    assert message.partner == bcl_rp.client_id
    assert "nonce" not in message.payload


def test_partner_that_received_no_token_is_not_notified(
    signed_in: BrowserClient, rp: Any, make_client: Any, relying_party: RelyingPartyServer
) -> None:
    make_client(name="Jamais utilisé", backchannel_logout_uri=relying_party.url)
    complete_flow(OIDCFlow(signed_in, rp))
    signed_in.post("/deconnexion/")
    assert not OutboxMessage.objects.filter(kind=KIND).exists()


def test_logout_revokes_the_sessions_refresh_tokens(signed_in: BrowserClient, bcl_rp: Any) -> None:
    tokens = complete_flow(OIDCFlow(signed_in, bcl_rp))
    signed_in.post("/deconnexion/")
    assert userinfo(tokens["access_token"]).status_code == 401
    response = BrowserClient().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        HTTP_AUTHORIZATION=bcl_rp.basic_auth(),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
