"""Outbox kinds of an account erasure (consent.erasure): the erasure itself, due at the end of
the grace period, and the erasure request to each partner that received data about the
resident.

The partner side is a seam: no partner connector exists yet (connectors/apps.py), so the
handler records, in the request's progress, that the partner holds nothing we can reach
beyond the tokens already revoked and the back-channel logout already sent. A connector
will replace `deliver_partner_erasure` by a call to the partner and record its answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from connectors.models import OutboxMessage
from connectors.outbox import PermanentDeliveryError, register_handler
from connectors.services import outbox_enqueue
from consent import erasure

DESTINATION = "worker"
# The erasure runs in one transaction; a failure is marked on the request ("failed") and
# looked at by an operator: the message is not retried.
ERASURE_MAX_ATTEMPTS = 1


def enqueue_erasure(
    *,
    kind: str,
    idempotency_key: str,
    payload: dict[str, Any],
    partner: str = "",
    not_before: datetime | None = None,
) -> OutboxMessage:
    """consent.erasure's queue: in the caller's transaction; payloads carry ids only."""
    return outbox_enqueue(
        kind=kind,
        destination=partner or DESTINATION,
        payload=payload,
        idempotency_key=idempotency_key,
        partner=partner,
        max_attempts=ERASURE_MAX_ATTEMPTS if kind == erasure.KIND_ERASURE else 12,
        not_before=not_before,
    )


def _field(message: OutboxMessage, name: str) -> str:
    value = (message.payload or {}).get(name)
    if not isinstance(value, str) or not value:
        raise PermanentDeliveryError(f"no {name} in the payload")
    return value


def deliver_erasure(message: OutboxMessage) -> None:
    """End of the grace period: erase (nothing when the request was cancelled). Delivered
    early (a replay, a clock ahead), a new message is scheduled for the end of the period."""
    request_id = _field(message, "request_id")
    due = erasure.erasure_not_yet_due(request_id=request_id)
    if due is not None:
        with transaction.atomic():
            enqueue_erasure(
                kind=erasure.KIND_ERASURE,
                idempotency_key=f"{erasure.KIND_ERASURE}:{request_id}:{due.isoformat()}",
                payload={"request_id": request_id},
                not_before=due,
            )
        return
    try:
        erasure.erasure_run(request_id=request_id)
    except erasure.ErasureFailed as exc:
        raise PermanentDeliveryError(f"erasure failed: {exc}") from None


def deliver_partner_erasure(message: OutboxMessage) -> None:
    """No connector yet: record honestly that nothing more can be asked of the partner."""
    erasure.partner_erasure_record(
        request_id=_field(message, "request_id"),
        client_id=_field(message, "client_id"),
        state=erasure.PARTNER_NO_CONNECTOR,
    )


def register_erasure_handlers() -> None:
    register_handler(erasure.KIND_ERASURE, deliver_erasure)
    register_handler(erasure.KIND_PARTNER_ERASURE, deliver_partner_erasure)
    erasure.register_erasure_queue(enqueue_erasure)
