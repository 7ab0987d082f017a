"""Writes of the connectors app."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors.models import OutboxMessage
from connectors.outbox import handler_for


class OutboxError(ValueError):
    pass


def outbox_enqueue(
    *,
    kind: str,
    destination: str,
    payload: dict[str, Any],
    idempotency_key: str,
    partner: str = "",
    max_attempts: int = 12,
    not_before: datetime | None = None,
) -> OutboxMessage:
    """Record a message for a partner inside the caller's transaction.

    Must be called within `transaction.atomic()` together with the change that causes it,
    so that the message exists if and only if the change was committed. A second call
    with the same idempotency key returns the existing message. `not_before`: not delivered
    before then (e.g. deleting an export archive when its link expires).
    """
    if not connection_in_atomic_block():
        raise OutboxError("outbox_enqueue must run inside the transaction of the change that causes it")

    if handler_for(kind) is None:
        raise OutboxError(f"no outbox handler registered for {kind!r}")
    try:
        with transaction.atomic():
            return OutboxMessage.objects.create(
                kind=kind,
                destination=destination,
                payload=payload,
                idempotency_key=idempotency_key,
                partner=partner,
                max_attempts=max_attempts,
                next_attempt_at=not_before or timezone.now(),
            )
    except IntegrityError:
        return OutboxMessage.objects.get(idempotency_key=idempotency_key)


def outbox_replay(*, message_id: Any) -> OutboxMessage:
    """Put a dead-lettered message back in the queue (operator action after a partner fix)."""
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().get(pk=message_id)
        if message.status != OutboxMessage.Status.DEAD:
            raise OutboxError("only dead-lettered messages can be replayed")
        message.status = OutboxMessage.Status.PENDING
        message.attempts = 0
        message.next_attempt_at = timezone.now()
        message.last_error = ""
        message.save(update_fields=["status", "attempts", "next_attempt_at", "last_error"])
        return message


def connection_in_atomic_block() -> bool:
    return transaction.get_connection().in_atomic_block
