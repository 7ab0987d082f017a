"""Writes of a resident's links to partner accounts (Mon compte › Cartes et abonnements).

- `link_create`: throttled per card (the keyed hash of the reference) and per account
  (settings.CONNECTOR_LINK_RATE_LIMIT), the credentials checked by the partner's connector
  (outside any database transaction: the wait is bounded by the connector's timeouts),
  then, in one transaction, the link (reference sealed, keyed hash, masked display) and its
  audit row. The secret (PIN) is never stored, logged or audited.
- `link_refresh`: the partner's current status of the card.
- `link_remove`: in one transaction the deprovision message (outbox, idempotency key
  `connectors.deprovision:<link id>`), the audit row and the deletion of the link.

**Attempts are counted before the partner is asked, even when it turns out to be down.**
The check and the count are one atomic step (common.ratelimit.hit), so parallel submissions
cannot exceed the limit; refunding failed calls afterwards would let a burst of guesses
through the moment the partner comes back, and the limit also bounds the load one account
puts on a struggling partner. The limits are generous enough for a resident retrying
during an outage (the page says how long to wait).

Audit rows carry ids and outcome codes only: never the card number, its hash or the PIN.
"""

from __future__ import annotations

import base64
import logging
import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from common import ratelimit as counters
from common.ratelimit import Block
from connectors import registry
from connectors.models import OutboxMessage, PartnerConnector, PartnerLink
from connectors.outbox import PermanentDeliveryError, RetryableDeliveryError, register_handler
from connectors.protocol import (
    Connector,
    ConnectorConfigError,
    ConnectorError,
    CredentialsRefused,
    LinkOutcome,
    PartnerProtocolError,
    PartnerUnavailable,
)
from connectors.sealing import (
    Unsealable,
    open_reference,
    open_secrets,
    reference_hash,
    seal_reference,
)
from connectors.services import outbox_enqueue
from identity.audit import audit_log
from identity.models import User

log = logging.getLogger(__name__)

KIND_DEPROVISION = "connectors.deprovision"


class LinkError(Exception):
    """A link refused on our side. `code`: disabled, already_linked (the card is linked to
    another account: whose is never said), already_has_link (this account has one for this
    partner), not_found."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class LinkThrottled(Exception):
    def __init__(self, block: Block) -> None:
        super().__init__(block.scope)
        self.block = block


def connector_for(partner_connector: PartnerConnector) -> Connector:
    """The connector of a configured partner (ConnectorConfigError: unknown kind, secrets unreadable)."""
    cls = registry.connector_class(partner_connector.kind)
    if cls is None:
        raise ConnectorConfigError(f"unknown connector kind {partner_connector.kind!r}")
    try:
        secrets = open_secrets(partner_connector.pk, partner_connector.secrets_sealed)
    except Unsealable as exc:
        raise ConnectorConfigError(str(exc)) from None
    return cls(config=partner_connector.config, secrets=secrets, partner=partner_connector.client.client_id)


def _throttle(user: User, card_hash: str) -> Block | None:
    limits = settings.CONNECTOR_LINK_RATE_LIMIT
    window = int(limits["window_seconds"])
    per_card = counters.hit("connector-link-card", card_hash, window)
    per_account = counters.hit("connector-link-account", str(user.pk), window)
    if per_card > limits["per_reference"] or per_account > limits["per_account"]:
        _start, left = counters.window(window)
        return Block("account" if per_account > limits["per_account"] else "reference", math.ceil(left))
    return None


def _audit_refused(user: User, partner_connector: PartnerConnector, reason: str, ip: str) -> None:
    audit_log(
        event="connector.link_refused",
        acting_user=user,
        subject_user=user,
        client_id=partner_connector.client.client_id,
        ip=ip,
        data={"connector": str(partner_connector.pk), "reason": reason},
    )


def _apply(link: PartnerLink, outcome: LinkOutcome) -> None:
    link.status = str(outcome.status)
    link.masked_reference = outcome.masked_reference
    link.expires_on = outcome.expires_on
    link.attributes = dict(outcome.attributes)
    link.last_checked_at = timezone.now()
    link.last_error = ""


def link_create(
    *, user: User, partner_connector: PartnerConnector, reference: str, secret: str, ip: str = ""
) -> PartnerLink:
    """Link the resident's account at the partner (see the module docstring).

    Raises LinkError, LinkThrottled, or the connector's errors (CredentialsRefused with its
    reason, PartnerUnavailable, PartnerProtocolError, InvalidReference): nothing is stored
    then, but the refusal is audited."""
    if not partner_connector.enabled:
        raise LinkError("disabled")
    connector = connector_for(partner_connector)
    card = connector.normalise_reference(reference)
    card_hash = reference_hash(partner_connector.pk, card)
    block = _throttle(user, card_hash)
    if block is not None:
        _audit_refused(user, partner_connector, "throttled", ip)
        raise LinkThrottled(block)
    if PartnerLink.objects.filter(user=user, connector=partner_connector).exists():
        raise LinkError("already_has_link")
    try:
        outcome = connector.link(card, secret)
    except CredentialsRefused as exc:
        _audit_refused(user, partner_connector, str(exc.reason), ip)
        raise
    except ConnectorError as exc:
        _audit_refused(user, partner_connector, exc.code, ip)
        raise
    # Checked once the partner confirmed the secret: only the card's holder learns that it
    # is linked elsewhere, never whose account it is.
    try:
        with transaction.atomic():
            if PartnerLink.objects.filter(connector=partner_connector, reference_hash=card_hash).exists():
                raise LinkError("already_linked")
            link = PartnerLink(user=user, connector=partner_connector, reference_hash=card_hash)
            link.reference_sealed = seal_reference(link.pk, card)
            _apply(link, outcome)
            link.save()
            audit_log(
                event="connector.link_created",
                acting_user=user,
                subject_user=user,
                client_id=partner_connector.client.client_id,
                ip=ip,
                data={"connector": str(partner_connector.pk), "link": str(link.pk), "status": link.status},
            )
    except IntegrityError:  # a parallel request linked the same card or this account first
        raise LinkError("already_linked") from None
    except LinkError as exc:
        _audit_refused(user, partner_connector, exc.code, ip)
        raise
    return link


def _own_link(user: User, link_id: Any) -> PartnerLink:
    link = PartnerLink.objects.select_related("connector__client").filter(pk=link_id, user=user).first()
    if link is None:
        raise LinkError("not_found")
    return link


def _refresh_block(user: User) -> Block | None:
    """Refreshes have their own counter per account (the same limit as linking): they ask
    the partner too, but must not use up the resident's linking attempts."""
    limits = settings.CONNECTOR_LINK_RATE_LIMIT
    window = int(limits["window_seconds"])
    if counters.hit("connector-refresh-account", str(user.pk), window) > limits["per_account"]:
        _start, left = counters.window(window)
        return Block("account", math.ceil(left))
    return None


def link_refresh(*, user: User, link_id: Any, ip: str = "") -> PartnerLink:
    """Ask the partner for the card's current status. On a partner failure the link keeps
    its last known status, `last_error` says why, and the error is raised for the page.
    LinkThrottled past the per-account limit (the partner is not asked)."""
    link = _own_link(user, link_id)
    block = _refresh_block(user)
    if block is not None:
        raise LinkThrottled(block)
    try:
        connector = connector_for(link.connector)
        outcome = connector.refresh(open_reference(link.pk, link.reference_sealed))
    except (ConnectorError, Unsealable) as exc:
        code = exc.code if isinstance(exc, ConnectorError) else "unsealable"
        PartnerLink.objects.filter(pk=link.pk).update(last_error=code[:40])
        if isinstance(exc, Unsealable):
            raise ConnectorConfigError(str(exc)) from None
        raise
    with transaction.atomic():
        _apply(link, outcome)
        link.save(
            update_fields=[
                "status",
                "masked_reference",
                "expires_on",
                "attributes",
                "last_checked_at",
                "last_error",
            ]
        )
        audit_log(
            event="connector.link_refreshed",
            acting_user=user,
            subject_user=user,
            client_id=link.connector.client.client_id,
            ip=ip,
            data={"connector": str(link.connector_id), "link": str(link.pk), "status": link.status},
        )
    return link


def link_remove(*, user: User, link_id: Any, ip: str = "") -> OutboxMessage:
    """Unlink: the deprovision message for the partner, the audit row and the deletion, in one
    transaction. The message carries the reference sealed (bound to the link's id) and is
    blanked once delivered (secret_payload)."""
    with transaction.atomic():
        link = (
            PartnerLink.objects.select_for_update()
            .select_related("connector__client")
            .filter(pk=link_id, user=user)
            .first()
        )
        if link is None:
            raise LinkError("not_found")
        message = outbox_enqueue(
            kind=KIND_DEPROVISION,
            destination=link.connector.kind,
            partner=link.connector.client.client_id,
            idempotency_key=f"{KIND_DEPROVISION}:{link.pk}",
            payload={
                "connector": str(link.connector_id),
                "link": str(link.pk),
                "reference": base64.b64encode(bytes(link.reference_sealed)).decode(),
            },
        )
        audit_log(
            event="connector.link_removed",
            acting_user=user,
            subject_user=user,
            client_id=link.connector.client.client_id,
            ip=ip,
            data={"connector": str(link.connector_id), "link": str(link.pk), "message": str(message.pk)},
        )
        link.delete()
    return message


@dataclass(frozen=True)
class _Deprovision:
    partner_connector: PartnerConnector
    reference: str


def _deprovision_of(message: OutboxMessage) -> _Deprovision:
    payload = message.payload or {}
    connector_id = str(payload.get("connector") or "")
    partner_connector = (
        PartnerConnector.objects.select_related("client").filter(pk=connector_id).first()
        if connector_id
        else None
    )
    if partner_connector is None:
        raise PermanentDeliveryError("the partner connector no longer exists")
    try:
        reference = open_reference(payload.get("link"), base64.b64decode(payload.get("reference") or ""))
    except (Unsealable, ValueError):
        raise PermanentDeliveryError("the sealed reference does not open") from None
    return _Deprovision(partner_connector, reference)


def deliver_deprovision(message: OutboxMessage) -> None:
    """Tell the partner that the resident unlinked the account, when its protocol allows it."""
    job = _deprovision_of(message)
    try:
        outcome = connector_for(job.partner_connector).deprovision(
            job.reference, idempotency_key=message.idempotency_key
        )
    except (PartnerUnavailable, PartnerProtocolError) as exc:
        # A garbage answer is often a passing state of the partner (a maintenance page, a proxy's
        # error page): retried with backoff, dead-lettered after the message's max_attempts.
        raise RetryableDeliveryError(exc.code) from None
    except ConnectorError as exc:
        raise PermanentDeliveryError(exc.code) from None
    log.info("deprovision %s at %s: %s", message.pk, job.partner_connector.kind, outcome.detail or "done")


def links_replacements_apply(*, partner_connector: PartnerConnector, since: str = "") -> tuple[int, str]:
    """Follow the partner's card replacement notices (a connector with `replacement_notices`,
    the transport kind): each linked card the partner replaced becomes "unknown to the
    partner" with the new card's masked number, and the resident is asked (on the page) to
    link the new card. Returns (links marked, the next cursor). Connector errors are raised."""
    connector = connector_for(partner_connector)
    read = getattr(connector, "replacement_notices", None)
    if read is None:
        return 0, ""
    notices, cursor = read(since)
    marked = 0
    for card, masked in notices:
        with transaction.atomic():
            link = (
                PartnerLink.objects.select_for_update()
                .filter(
                    connector=partner_connector, reference_hash=reference_hash(partner_connector.pk, card)
                )
                .first()
            )
            if link is None or link.attributes.get("replaced_by") == masked:
                continue
            link.status = PartnerLink.Status.UNLINKED
            link.attributes = {"replaced_by": masked}
            link.expires_on = None
            link.last_checked_at = timezone.now()
            link.save(update_fields=["status", "attributes", "expires_on", "last_checked_at"])
            audit_log(
                event="connector.link_replaced",
                subject_user=link.user,
                client_id=partner_connector.client.client_id,
                data={"connector": str(partner_connector.pk), "link": str(link.pk)},
            )
            marked += 1
    return marked, cursor


def register_link_handlers() -> None:
    register_handler(KIND_DEPROVISION, deliver_deprovision, secret_payload=True)
