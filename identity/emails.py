"""Plain-text emails to residents, in their preferred language.

Each email is two templates in templates/emails/: `<name>_subject.txt` (one line) and
`<name>.txt` (the body). Links are built on the configured issuer, never on the Host
header of the request that caused the email. Nothing here logs an address or a token.

Emails leave through the transactional outbox, never inside the request: `send_email`
renders the message and queues it in the caller's transaction (so it exists if and only
if the change that caused it commits, and a request does no SMTP: its duration does not
tell whether an address has an account); `manage.py outbox_worker` sends it
(connectors/handlers.py). The queued message holds the recipient and the links, which are
secrets (reset, verification, "Ce n'était pas vous ?"): it is sealed with AES-256-GCM under
KEY_ENCRYPTION_KEY, bound to its outbox row, and blanked once delivered or abandoned.
The outbox lives above this module (docs/architecture.md, "Layers"): the connectors app
registers the queue here from its AppConfig.ready().
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext

from common.crypto import decrypt_at_rest, encrypt_at_rest

logger = logging.getLogger(__name__)


def absolute_url(path: str) -> str:
    return settings.ISSUER + path


def render_email(*, template: str, context: dict[str, Any], language: str) -> tuple[str, str]:
    """The subject and body of an email, rendered in `language`."""
    if language not in {code for code, _name in settings.LANGUAGES}:
        language = settings.LANGUAGE_CODE
    full_context = {"site_name": _site_name(language), "site_url": absolute_url("/"), **context}
    with translation.override(language):
        subject = render_to_string(f"emails/{template}_subject.txt", full_context)
        body = render_to_string(f"emails/{template}.txt", full_context)
    return " ".join(subject.split()), body.strip() + "\n"


def _site_name(language: str) -> str:
    with translation.override(language):
        return gettext("Compte unique métropolitain")


EmailQueue = Callable[..., Any]  # (*, idempotency_key: str, payload: dict) -> Any
_queue: EmailQueue | None = None
SEAL_VERSION = 1


def register_email_queue(queue: EmailQueue) -> None:
    """Called from the connectors app's ready(): how `send_email` puts a message in the outbox."""
    global _queue
    _queue = queue


def send_email(*, to: str, template: str, context: dict[str, Any], language: str) -> None:
    """Render one email and queue it in the caller's transaction (its own if there is none).

    The outbox worker sends it after the transaction commits, at least once, retried with
    backoff; a failed delivery never undoes the change that caused it, and the resident
    can always ask for the email again.
    """
    if _queue is None:
        raise ImproperlyConfigured("no email queue registered: is the connectors app installed?")
    subject, body = render_email(template=template, context=context, language=language)
    key = f"email:{uuid.uuid4()}"
    payload = {"template": template, **seal_email(idempotency_key=key, to=to, subject=subject, body=body)}
    with transaction.atomic():
        _queue(idempotency_key=key, payload=payload)
    logger.info("email %s queued", template)


@dataclass(frozen=True)
class SealedEmail:
    to: str
    subject: str
    body: str


class UnreadableEmail(ValueError):
    """The queued payload is missing, blanked, altered or not for this outbox row."""


def _seal_context(idempotency_key: str) -> bytes:
    # Bound as associated data: a payload copied to another row does not open.
    return b"cum outbox email v1:" + idempotency_key.encode()


def seal_email(*, idempotency_key: str, to: str, subject: str, body: str) -> dict[str, Any]:
    plaintext = json.dumps({"to": to, "subject": subject, "body": body}).encode()
    blob = encrypt_at_rest(plaintext, context=_seal_context(idempotency_key))
    return {"v": SEAL_VERSION, "sealed": base64.urlsafe_b64encode(blob).decode()}


def open_email(*, idempotency_key: str, payload: dict[str, Any]) -> SealedEmail:
    if not isinstance(payload, dict) or payload.get("v") != SEAL_VERSION:
        raise UnreadableEmail("no sealed email in the payload")
    sealed = payload.get("sealed")
    if not isinstance(sealed, str):
        raise UnreadableEmail("no sealed email in the payload")
    try:
        blob = base64.urlsafe_b64decode(sealed.encode())
        fields = json.loads(decrypt_at_rest(blob, context=_seal_context(idempotency_key)))
        return SealedEmail(to=str(fields["to"]), subject=str(fields["subject"]), body=str(fields["body"]))
    except (InvalidTag, ValueError, KeyError, TypeError) as exc:
        raise UnreadableEmail(f"sealed email does not open: {type(exc).__name__}") from None


def email_message(*, email: SealedEmail, message_id: str) -> EmailMessage:
    """The message as sent. Its Message-ID is the outbox row's: a re-send after a worker
    crash (at least once; SMTP cannot deduplicate) carries the same one, which mail
    systems and clients can use to show it once."""
    domain = urlsplit(settings.ISSUER).hostname or "localhost"
    return EmailMessage(
        subject=email.subject,
        body=email.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[email.to],
        headers={"Message-ID": f"<{message_id}@{domain}>"},
    )
