"""OpenID Connect Back-Channel Logout 1.0 (and the front-channel URIs of Front-Channel Logout 1.0).

When a browser session ends (identity.sessions.session_end), every partner that received
tokens in it and registered a `backchannel_logout_uri` gets a message in the outbox, in
the same transaction. The relay (`manage.py outbox_worker`) delivers it at least once:
the logout token is built and signed at delivery time (so that a partner that was down
for an hour still receives a fresh, short-lived token), POSTed form-encoded as
`logout_token=<jwt>`; any 2xx is a delivery, 5xx/timeouts are retried with backoff, a
4xx is dead-lettered (visible to operators, replayable).

The logout token (§2.4): a JWT signed with the key and algorithm of the client's ID
tokens, header `typ: logout+jwt` and `kid`; claims `iss`, `aud` (the client_id), `iat`,
`exp` (short), `jti` (stable across retries of one message, so the partner can drop
duplicates), `events` with the back-channel logout event, `sub` (as this client knows
the resident: pairwise or public) and `sid`. Never `nonce`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from jwcrypto import jwt
from oauth2_provider.models import get_application_model

from connectors.outbox import PermanentDeliveryError, http_post_form, register_handler
from connectors.services import outbox_enqueue
from identity.keys import active_signing_key
from identity.oidc.errors import add_query
from identity.oidc.subjects import subject_for
from identity.sessions import register_session_ended_listener

KIND = "oidc_backchannel_logout"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def logout_token(*, client: Any, sub: str, sid: str, jti: str, now: int | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": settings.ISSUER,
        "aud": client.client_id,
        "iat": issued,
        "exp": issued + settings.OIDC_LOGOUT_TOKEN_EXPIRE_SECONDS,
        "jti": jti,
        "events": {LOGOUT_EVENT: {}},
        "sub": sub,
    }
    if sid:
        claims["sid"] = sid
    key = active_signing_key(client.signing_algorithm)
    token = jwt.JWT(header={"typ": "logout+jwt", "alg": key.algorithm, "kid": key.kid}, claims=claims)
    token.make_signed_token(key.jwk)
    return str(token.serialize())


def idempotency_key(*, sid: str, client_id: str) -> str:
    return f"oidc-bcl:{sid}:{client_id}"


def enqueue_for_ended_session(session: Any, clients: list[Any]) -> None:
    """Session-ended listener (registered in IdentityConfig.ready()): one message per partner."""

    for client in clients:
        if not client.backchannel_logout_uri:
            continue
        outbox_enqueue(
            kind=KIND,
            destination=client.backchannel_logout_uri,
            payload={
                "client_id": client.client_id,
                "sub": subject_for(client, session.user),
                "sid": session.sid,
                "jti": str(uuid.uuid4()),
            },
            idempotency_key=idempotency_key(sid=session.sid, client_id=client.client_id),
            partner=client.client_id,
        )


def enqueue_for_withdrawal(*, user: Any, client: Any, sids: list[str], withdrawal: str) -> int:
    """A resident withdrew this partner's access: log the partner out of the resident's sessions.

    One message per live session the partner received tokens in (`sids`), with its `sid`;
    with none, one message naming the resident only (`sub`, no `sid`: every session of
    theirs at the partner, §2.4), unless the partner requires a `sid`. `withdrawal` (the
    ledger event's id) keeps these messages apart from a later sign-out's. Caller's
    transaction. Returns how many were queued.
    """
    if not client.backchannel_logout_uri:
        return 0
    targets = list(sids) or ([] if client.backchannel_logout_session_required else [""])
    for sid in targets:
        outbox_enqueue(
            kind=KIND,
            destination=client.backchannel_logout_uri,
            payload={
                "client_id": client.client_id,
                "sub": subject_for(client, user),
                "sid": sid,
                "jti": str(uuid.uuid4()),
            },
            idempotency_key=f"oidc-bcl-withdrawn:{withdrawal}:{sid}:{client.client_id}"[:200],
            partner=client.client_id,
        )
    return len(targets)


def deliver(message: Any) -> None:
    """Outbox handler: sign a fresh logout token and POST it to the partner."""

    payload = message.payload or {}
    client = get_application_model().objects.filter(client_id=payload.get("client_id", "")).first()
    if client is None:
        raise PermanentDeliveryError("client no longer registered")
    token = logout_token(
        client=client, sub=str(payload.get("sub", "")), sid=str(payload.get("sid", "")), jti=payload["jti"]
    )
    http_post_form(message.destination, {"logout_token": token})


def register() -> None:
    register_handler(KIND, deliver)
    register_session_ended_listener(enqueue_for_ended_session)


# --- Front-Channel Logout 1.0 ----------------------------------------------------------------


def frontchannel_logout_urls(session: Any, clients: list[Any]) -> list[str]:
    """The URLs to load in invisible iframes on the signed-out page (§2): iss and sid added."""
    urls = []
    for client in clients:
        if client.frontchannel_logout_uri:
            urls.append(
                add_query(client.frontchannel_logout_uri, {"iss": settings.ISSUER, "sid": session.sid})
            )
    return urls


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
