"""Built-in outbox message kinds: emails to residents and residents' data-rights requests
(consent.rights_requests: building an export, deleting its archive at expiry). Back-channel
logout is registered by identity/oidc/backchannel.py."""

from __future__ import annotations

import smtplib
from datetime import datetime
from typing import Any

from connectors.models import OutboxMessage
from connectors.outbox import PermanentDeliveryError, RetryableDeliveryError, register_handler
from connectors.services import outbox_enqueue
from consent import rights_requests
from identity.emails import UnreadableEmail, email_message, open_email, register_email_queue

EMAIL = "email"
# 5 s doubling, jittered (connectors.outbox.backoff_delay): the last of 10 attempts comes
# 21 to 43 minutes after the first, while a reset link (valid one hour) is still good;
# past that, the resident asks again.
EMAIL_MAX_ATTEMPTS = 10


def enqueue_email(*, idempotency_key: str, payload: dict[str, Any]) -> OutboxMessage:
    """identity.emails.send_email's queue: one outbox row per email, in the caller's
    transaction. The destination names the transport, never the address (which is sealed
    in the payload)."""

    return outbox_enqueue(
        kind=EMAIL,
        destination="smtp",
        payload=payload,
        idempotency_key=idempotency_key,
        max_attempts=EMAIL_MAX_ATTEMPTS,
    )


def deliver_email(message: OutboxMessage) -> None:
    """Open the sealed email and hand it to Django's mail backend (EMAIL_BACKEND).

    Errors are reported by type only: SMTP exceptions carry the recipient address, and
    the relay logs and stores what it is given. A recipient refused for good (5xx) is
    dead-lettered; anything else (server down, timeout, 4xx) is retried with backoff.
    """

    try:
        email = open_email(idempotency_key=message.idempotency_key, payload=message.payload)
    except UnreadableEmail:
        raise PermanentDeliveryError("sealed email unreadable") from None
    try:
        email_message(email=email, message_id=str(message.pk)).send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _reply in exc.recipients.values()]
        if codes and all(500 <= code < 600 for code in codes):
            raise PermanentDeliveryError(type(exc).__name__) from None
        raise RetryableDeliveryError(type(exc).__name__) from None
    except Exception as exc:
        raise RetryableDeliveryError(type(exc).__name__) from None


RIGHTS_DESTINATION = "worker"
# An export that fails is marked "failed" at once (the resident sees it and may ask again):
# the message is not retried.
RIGHTS_MAX_ATTEMPTS = 3


def enqueue_rights_request(
    *, kind: str, request_id: str, not_before: datetime | None = None, step: str = ""
) -> OutboxMessage:
    """consent.rights_requests' queue: one outbox row per step of a rights request, in the
    caller's transaction. The payload is the request's id only; `step` tells apart the
    messages of one kind for one request (a build queued again, each version's expiry)."""
    return outbox_enqueue(
        kind=kind,
        destination=RIGHTS_DESTINATION,
        payload={"request_id": request_id},
        idempotency_key=f"{kind}:{request_id}:{step}" if step else f"{kind}:{request_id}",
        max_attempts=RIGHTS_MAX_ATTEMPTS,
        not_before=not_before,
    )


def _request_id(message: OutboxMessage) -> str:
    request_id = (message.payload or {}).get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise PermanentDeliveryError("no rights request in the payload")
    return request_id


def deliver_rights_export(message: OutboxMessage) -> None:
    """Build the resident's export archive (consent.rights_requests.export_build)."""
    try:
        rights_requests.export_build(request_id=_request_id(message))
    except rights_requests.ExportFailed as exc:
        raise PermanentDeliveryError(f"export failed: {exc}") from None


def deliver_rights_export_expire(message: OutboxMessage) -> None:
    """Delete an export's archive once its link expired (consent.rights_requests.export_expire)."""
    rights_requests.export_expire(request_id=_request_id(message))


def deliver_rights_export_update(message: OutboxMessage) -> None:
    """A partner's data arrived after the build: a new version of the archive
    (consent.rights_requests.export_update); retried while the first build still runs."""
    outcome = rights_requests.export_update(request_id=_request_id(message))
    if outcome == rights_requests.UpdateOutcome.NOT_READY:
        raise RetryableDeliveryError("the archive is still being built")


def register_builtin_handlers() -> None:
    register_handler(EMAIL, deliver_email, secret_payload=True)
    register_email_queue(enqueue_email)
    register_handler(rights_requests.KIND_EXPORT, deliver_rights_export)
    register_handler(rights_requests.KIND_EXPORT_EXPIRE, deliver_rights_export_expire)
    register_handler(rights_requests.KIND_EXPORT_UPDATE, deliver_rights_export_update)
    rights_requests.register_queue(enqueue_rights_request)
