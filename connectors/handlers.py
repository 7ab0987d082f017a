"""Built-in outbox message kinds: emails to residents (back-channel logout is registered by
identity/oidc/backchannel.py)."""

from __future__ import annotations

import smtplib
from typing import Any

from connectors.models import OutboxMessage
from connectors.outbox import PermanentDeliveryError, RetryableDeliveryError, register_handler
from connectors.services import outbox_enqueue
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


def register_builtin_handlers() -> None:
    register_handler(EMAIL, deliver_email, secret_payload=True)
    register_email_queue(enqueue_email)
