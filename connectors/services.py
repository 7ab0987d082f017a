"""Writes of the connectors app."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors import registry
from connectors.models import OutboxMessage, PartnerConnector
from connectors.outbox import handler_for
from connectors.sealing import open_secrets, seal_secrets
from identity.audit import audit_log
from identity.models import User


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


def outbox_replay_partner(
    *, partner: str, kind: str = "", dead_only: bool = False, acting_user: User | None = None
) -> int:
    """Replay a partner's messages (an operator, after the partner was fixed): its dead letters
    go back to the queue as `outbox_replay` does (pending, attempts 0, due now, error emptied);
    unless `dead_only`, its failing pending messages (attempts > 0) are also made due now,
    their attempts kept. Of one `kind` only when given. One UPDATE each and an audit row, in
    one transaction. Returns how many messages were put back or made due."""
    now = timezone.now()
    selection = OutboxMessage.objects.filter(partner=partner)
    if kind:
        selection = selection.filter(kind=kind)
    with transaction.atomic():
        dead = selection.filter(status=OutboxMessage.Status.DEAD).update(
            status=OutboxMessage.Status.PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            locked_until=None,
        )
        retried = 0
        if not dead_only:
            retried = selection.filter(
                status=OutboxMessage.Status.PENDING, attempts__gt=0, next_attempt_at__gt=now
            ).update(next_attempt_at=now)
        audit_log(
            event="outbox.replayed",
            acting_user=acting_user,
            client_id=partner,
            data={"kind": kind, "dead": dead, "retried": retried, "dead_only": dead_only},
        )
    return dead + retried


def connection_in_atomic_block() -> bool:
    return transaction.get_connection().in_atomic_block


class ConnectorSettingsError(ValueError):
    """A partner connector's settings that its kind refuses (the problems, in English)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def partner_connector_configure(
    *,
    client: Any,
    kind: str,
    label: str,
    config: dict[str, Any],
    secrets: dict[str, str] | None = None,
    enabled: bool = True,
    acting_user: User | None = None,
) -> PartnerConnector:
    """Create or update the connector of `kind` for a partner client (load_demo, operators'
    scripts; the admin does the same through its form). `secrets` None keeps the stored ones."""
    cls = registry.connector_class(kind)
    if cls is None:
        raise ConnectorSettingsError([f"unknown connector kind {kind!r}"])
    with transaction.atomic():
        partner_connector = (
            PartnerConnector.objects.select_for_update().filter(client=client, kind=kind).first()
        )
        created = partner_connector is None
        if partner_connector is None:
            partner_connector = PartnerConnector(client=client, kind=kind)
        effective = (
            secrets
            if secrets is not None
            else open_secrets(partner_connector.pk, partner_connector.secrets_sealed)
        )
        problems = cls.check_config(config, effective)
        if problems:
            raise ConnectorSettingsError(problems)
        partner_connector.label = label
        partner_connector.config = config
        partner_connector.enabled = enabled
        if secrets is not None:
            partner_connector.secrets_sealed = seal_secrets(partner_connector.pk, secrets)
        partner_connector.save()
        audit_log(
            event="connector.added" if created else "connector.changed",
            acting_user=acting_user,
            client_id=client.client_id,
            data={
                "connector": str(partner_connector.pk),
                "kind": kind,
                "secrets_changed": secrets is not None,
            },
        )
    return partner_connector
