"""Built-in outbox message kinds."""

from __future__ import annotations

import smtplib
from typing import Any

from connectors.models import OutboxMessage
from connectors.outbox import (
    PermanentDeliveryError,
    RetryableDeliveryError,
    http_post_form,
    register_handler,
)

HTTP_FORM_POST = "http_form_post"
EMAIL = "email"
# 5 s doubling, jittered (connectors.outbox.backoff_delay): the last of 10 attempts comes
# 21 to 43 minutes after the first, while a reset link (valid one hour) is still good;
# past that, the resident asks again.
EMAIL_MAX_ATTEMPTS = 10


def deliver_http_form_post(message: OutboxMessage) -> None:
    """POST `payload["fields"]` form-encoded to `destination`; any 2xx is a delivery."""
    fields = message.payload.get("fields")
    if not isinstance(fields, dict):
        raise PermanentDeliveryError("payload has no fields")
    http_post_form(
        message.destination,
        {str(k): str(v) for k, v in fields.items()},
        headers={"Idempotency-Key": message.idempotency_key},
    )


def enqueue_email(*, idempotency_key: str, payload: dict[str, Any]) -> OutboxMessage:
    """identity.emails.send_email's queue: one outbox row per email, in the caller's
    transaction. The destination names the transport, never the address (which is sealed
    in the payload)."""
    from connectors.services import outbox_enqueue

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
    from identity.emails import UnreadableEmail, email_message, open_email

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
    from identity.emails import register_email_queue

    register_handler(HTTP_FORM_POST, deliver_http_form_post)
    register_handler(EMAIL, deliver_email, secret_payload=True)
    register_email_queue(enqueue_email)
