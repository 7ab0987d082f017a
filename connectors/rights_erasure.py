"""Outbox kinds of an account erasure (consent.erasure): the erasure itself, due at the end of
the grace period, and the erasure request to each partner that received data about the
resident.

The partner side: a partner without a connector (connectors.PartnerConnector) holds nothing
we can reach beyond the tokens already revoked and the back-channel logout already sent
(`no_connector`). A partner with connectors gets each connector's `erase`, and its answer is
recorded as it is: `erased` when the partner confirmed, `not_supported` when its protocol
cannot be asked (the library's SIP2 has no erasure message: an operator forwards the
request, until an email connector does). The links themselves were erased here by the
connectors' rights provider before this message was delivered, so `erase` gets no reference.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from connectors.links import connector_for
from connectors.models import OutboxMessage, PartnerConnector
from connectors.outbox import PermanentDeliveryError, RetryableDeliveryError, register_handler
from connectors.protocol import ConnectorError, PartnerUnavailable
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


def _connector_answer(partner_connector: PartnerConnector, idempotency_key: str) -> str:
    try:
        outcome = connector_for(partner_connector).erase(None, idempotency_key=idempotency_key)
    except PartnerUnavailable as exc:
        raise RetryableDeliveryError(exc.code) from None
    except ConnectorError as exc:
        raise PermanentDeliveryError(exc.code) from None
    return str(outcome.state)


def deliver_partner_erasure(message: OutboxMessage) -> None:
    """Ask each of the partner's connectors; without one, record that nothing more can be asked."""
    request_id = _field(message, "request_id")
    client_id = _field(message, "client_id")
    connectors = list(
        PartnerConnector.objects.filter(client__client_id=client_id).select_related("client").order_by("kind")
    )
    if not connectors:
        state = erasure.PARTNER_NO_CONNECTOR
    else:
        answers = [_connector_answer(item, f"{message.idempotency_key}:{item.kind}") for item in connectors]
        # The weakest answer stands for the partner: one connector that could not ask is enough
        # for an operator to act.
        state = next((answer for answer in answers if answer != "erased"), "erased")
    erasure.partner_erasure_record(request_id=request_id, client_id=client_id, state=state)


def register_erasure_handlers() -> None:
    register_handler(erasure.KIND_ERASURE, deliver_erasure)
    register_handler(erasure.KIND_PARTNER_ERASURE, deliver_partner_erasure)
    erasure.register_erasure_queue(enqueue_erasure)
