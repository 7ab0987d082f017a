"""Provisioning residents at SCIM partners (the "scim" connector kind, connectors/scim.py),
through the outbox, following the resident's consent.

When (each in the transaction of its cause, one message per SCIM connector of the partner):

- the resident allows the partner to receive their data on the consent screen
  (identity.oidc.sharing.consent_decision_record calls `sharing_changed`, reason "granted",
  key the ledger event's id): the partner's user is created, or updated and reactivated;
- the resident's shared details change (identity.services' account-changed listeners:
  names, email, phone, address): every SCIM partner already holding the resident
  (`ScimAccount`) gets an update, reason "changed";
- the resident withdraws the partner's access in Mon compte › Services connectés
  (identity.oidc.sharing.sharing_withdraw calls `sharing_changed`, reason "withdrawn"):
  the partner's user is deactivated (`active` false), not deleted: the resident may come back;
- every day (`manage.py scim_reconcile`, `scim_reconcile`), reason "reconcile": every
  resident a partner holds active, so that a consent that lapsed (or was withdrawn another
  way than from Services connectés) deactivates the partner's user too;
- the account's erasure: the partner's user is deleted by the erasure message every partner
  with a connector gets (connectors/rights_erasure.py → ScimConnector.erase, by the `sub`
  the message carries).

Every message of this module has the one kind `connectors.scim_sync`, its payload ids only
(connector, user, reason), and its delivery converges instead of replaying an order: the
handler reads, at delivery time, what the resident lets the partner receive now (the
release reader identity.oidc registers: the same rule as the ID token's claims, through
the consent ledger) and the connector makes the partner's user match it (ScimConnector.sync:
created, updated, deactivated, or nothing). A delivery repeated, replayed or late (a retried
"granted" after a "withdrawn") therefore leaves the partner as the resident's consent is now:
never a second user, never a user reactivated after a withdrawal. A resident whose account
was erased meanwhile is not provisioned again.

Failures: the partner down, slow (timeout) or answering garbage is retried with backoff up
to the connector's `max_attempts`, then dead-lettered with the reason (operators replay it,
`outbox_replay --partner`); the partner refusing the request (4xx) or a misconfigured
connector is dead-lettered at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from connectors import subjects
from connectors.links import connector_for
from connectors.models import OutboxMessage, PartnerConnector, ScimAccount
from connectors.outbox import PermanentDeliveryError, RetryableDeliveryError, register_handler
from connectors.protocol import ConnectorError, PartnerProtocolError, PartnerUnavailable
from connectors.scim import DEFAULT_MAX_ATTEMPTS, KIND, ScimConnector
from connectors.services import outbox_enqueue
from identity import services as identity_services
from identity.audit import audit_log
from identity.models import User

log = logging.getLogger(__name__)

KIND_SYNC = "connectors.scim_sync"
REASON_GRANTED = "granted"
REASON_CHANGED = "changed"
REASON_WITHDRAWN = "withdrawn"
REASON_RECONCILE = "reconcile"
# The User fields whose change may change what a SCIM partner holds (connectors.scim.user_resource).
SHARED_FIELDS = frozenset(
    {
        "given_name",
        "family_name",
        "email",
        "phone_number",
        "street_address",
        "locality",
        "postal_code",
        "country",
    }
)

# (client_id, user) → the claims that partner client may receive about the resident now (the
# ID token's rule: scopes granted, sharing purpose granted in the ledger), or None when the
# resident shares nothing with it. identity.oidc registers it (connectors never import it).
ReleaseReader = Callable[[str, Any], dict[str, Any] | None]
_release_reader: ReleaseReader | None = None


def register_release_reader(reader: ReleaseReader) -> None:
    global _release_reader
    _release_reader = reader


def partner_release(client_id: str, user: Any) -> dict[str, Any] | None:
    if _release_reader is None:
        raise PermanentDeliveryError("no release reader registered: is identity.oidc installed?")
    return _release_reader(client_id, user)


def _max_attempts(partner_connector: PartnerConnector) -> int:
    value = (partner_connector.config or {}).get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    return (
        value
        if isinstance(value, int) and not isinstance(value, bool) and value > 0
        else DEFAULT_MAX_ATTEMPTS
    )


def _enqueue(partner_connector: PartnerConnector, user: User, reason: str, key: str) -> OutboxMessage:
    return outbox_enqueue(
        kind=KIND_SYNC,
        destination=KIND,
        partner=partner_connector.client.client_id,
        idempotency_key=f"{KIND_SYNC}:{partner_connector.pk}:{user.pk}:{key}"[:200],
        payload={"connector": str(partner_connector.pk), "user": str(user.pk), "reason": reason},
        max_attempts=_max_attempts(partner_connector),
    )


def sharing_changed(*, user: User, client_id: str, reason: str, key: str) -> list[OutboxMessage]:
    """The resident granted (`reason` "granted") or withdrew ("withdrawn") a partner's access:
    one message per enabled SCIM connector of the partner, in the caller's transaction. `key`
    names the cause (the ledger event's id): the same cause queues once."""
    connectors = PartnerConnector.objects.filter(
        client__client_id=client_id, kind=KIND, enabled=True
    ).select_related("client")
    return [_enqueue(item, user, reason, key) for item in connectors]


def account_changed(user: User, fields: list[str]) -> None:
    """identity.services' listener: the resident's details changed; the SCIM partners that hold
    the resident get an update (whatever the resident lets each receive, read at delivery)."""
    if not SHARED_FIELDS.intersection(fields):
        return
    accounts = ScimAccount.objects.filter(user=user, connector__enabled=True).select_related(
        "connector__client"
    )
    key = f"{REASON_CHANGED}:{uuid.uuid4()}"
    with transaction.atomic():
        for account in accounts:
            _enqueue(account.connector, user, REASON_CHANGED, key)


def scim_reconcile(*, run: str) -> int:
    """One update per resident a SCIM partner holds active (`manage.py scim_reconcile`, daily):
    each delivery converges, so a consent that lapsed or was withdrawn another way than from
    Services connectés (which queue nothing themselves) deactivates the partner's user, and a
    user the partner lost is created again. `run` names the run (the day): run twice, it
    queues once. Returns how many messages were queued."""
    accounts = ScimAccount.objects.filter(active=True, connector__enabled=True).select_related(
        "connector__client", "user"
    )
    queued = 0
    with transaction.atomic():
        for account in accounts.iterator():
            _enqueue(account.connector, account.user, REASON_RECONCILE, f"{REASON_RECONCILE}:{run}")
            queued += 1
    return queued


def _job(message: OutboxMessage) -> tuple[PartnerConnector, User | None]:
    payload = message.payload or {}
    connector_id = str(payload.get("connector") or "")
    partner_connector = (
        PartnerConnector.objects.select_related("client").filter(pk=connector_id, kind=KIND).first()
        if connector_id
        else None
    )
    if partner_connector is None:
        raise PermanentDeliveryError("the SCIM connector no longer exists")
    if not partner_connector.enabled:
        raise PermanentDeliveryError("the SCIM connector is disabled (replay once enabled)")
    user_id = str(payload.get("user") or "")
    try:
        user = User.objects.filter(pk=user_id).first() if user_id else None
    except (ValueError, TypeError, ValidationError):
        raise PermanentDeliveryError("the payload names no account") from None
    return partner_connector, user


def deliver_scim_sync(message: OutboxMessage) -> None:
    """Make the partner's user match what the resident shares with the partner now."""
    partner_connector, user = _job(message)
    if user is None:
        # Erased meanwhile: the erasure's own message asks the partner to delete its user.
        log.info("scim %s: the account no longer exists, nothing to provision", message.pk)
        return
    client_id = partner_connector.client.client_id
    claims = partner_release(client_id, user)
    subject = subjects.partner_subject(client_id, user)
    connector = connector_for(partner_connector)
    if not isinstance(connector, ScimConnector):
        raise PermanentDeliveryError("not a SCIM connector")
    try:
        outcome = connector.sync(subject, claims, idempotency_key=message.idempotency_key)
    except (PartnerUnavailable, PartnerProtocolError) as exc:
        raise RetryableDeliveryError(f"{exc.code}: {exc}") from None
    except ConnectorError as exc:
        raise PermanentDeliveryError(f"{exc.code}: {exc}") from None
    with transaction.atomic():
        if outcome.scim_id:
            ScimAccount.objects.update_or_create(
                user=user,
                connector=partner_connector,
                defaults={
                    "scim_id": outcome.scim_id[:200],
                    "active": claims is not None,
                    "last_action": outcome.action,
                    "synced_at": timezone.now(),
                },
            )
        audit_log(
            event="connector.scim_synced",
            subject_user=user,
            client_id=client_id,
            data={
                "connector": str(partner_connector.pk),
                "message": str(message.pk),
                "reason": str((message.payload or {}).get("reason") or ""),
                "action": outcome.action,
            },
        )


def register_scim_handlers() -> None:
    register_handler(KIND_SYNC, deliver_scim_sync)
    identity_services.register_account_changed_listener(account_changed)
