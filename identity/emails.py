"""Plain-text emails to residents, in their preferred language.

Each email is two templates in templates/emails/: `<name>_subject.txt` (one line) and
`<name>.txt` (the body). Links are built on the configured issuer, never on the Host
header of the request that caused the email. Nothing here logs an address or a token.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

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
    from django.utils.translation import gettext

    with translation.override(language):
        return gettext("Compte unique métropolitain")


def send_email(*, to: str, template: str, context: dict[str, Any], language: str) -> bool:
    """Render and send one email. Returns False (and logs without personal data) on failure.

    Callers send after their transaction commits; a failed delivery must not undo the
    change that caused it, and the resident can always ask for the email again.
    """
    subject, body = render_email(template=template, context=context, language=language)
    message = EmailMessage(subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[to])
    try:
        message.send()
    except Exception as exc:  # SMTP errors carry the recipient address: log the type only.
        logger.error("email %s not sent: %s", template, type(exc).__name__)
        return False
    logger.info("email %s sent", template)
    return True
