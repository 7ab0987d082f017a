"""The email connector (kind "email"): for partners with no API, export and erasure requests
go by email to the partner's data-protection contact, and an operator records the answer.

Configuration (PartnerConnector.config): `contact_email`, the partner's data-protection
contact (required), and `contact_name`, how to greet it (optional). No secrets.

- `send_rights_request` writes the email through the outbox (identity.emails.send_email, the
  EMAIL kind: sealed, retried, delivered after the transaction commits), in the transaction
  of the rights handler that records the partner's state "requested"
  (connectors/rights_export.py, connectors/rights_erasure.py) and the operator's work item
  (connectors.PartnerRightsAsk). The email is in French, in plain language: our reference
  (the rights request's id), what is asked, the legal deadline (one month, GDPR Art. 12(3)),
  where to answer (the controller's DPO, settings.CONSENT_CONTROLLER), and what identifies the
  resident at the partner, kept minimal: the `sub` that partner client receives in its ID
  tokens (always: the partner's own SSO id of the resident) and the card number ONLY when the
  resident linked a card at that same partner (its other connector: a library card, a
  Libertan card), since that is the partner's own identifier. Never the resident's name,
  email or birth date: the partner already holds what goes with its own identifiers.
- The answer comes back to people, not to code: an operator records it in the admin
  (connectors/partner_answers.py).
- `link`, `refresh`: this kind links no resident account (CredentialsRefused: never offered on
  the cards page, `links_accounts` is False). `provision`, `deprovision`: nothing to do.
  `export`, `erase` are never called synchronously for this kind (AnswersLater): they say so.
- `health`: ok when configured (a contact address); nothing is sent to check it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from connectors.protocol import (
    AnswersLater,
    Connector,
    CredentialsRefused,
    ErasureOutcome,
    ErasureState,
    Health,
    LinkOutcome,
    PartnerProtocolError,
    ProvisionOutcome,
    RefusalReason,
    RightsAsk,
)
from connectors.registry import register
from identity.emails import send_email

KIND = "email"
TEMPLATE = "partner_rights_request"
# The partner is a French public or cultural body: its data-protection contact reads French.
LANGUAGE = "fr"


def _contact(config: Mapping[str, Any]) -> str:
    return str(config.get("contact_email") or "").strip()


@register
class EmailPartnerConnector(Connector, AnswersLater):
    kind = KIND
    config_keys = ("contact_email", "contact_name")
    links_accounts = False

    @classmethod
    def check_config(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
        problems = [f"unknown setting {key!r}" for key in config if key not in cls.config_keys]
        problems += [f"unknown secret {key!r}" for key in secrets]
        contact = _contact(config)
        if not contact:
            problems.append("contact_email is required: the partner's data-protection contact")
        else:
            try:
                validate_email(contact)
            except ValidationError:
                problems.append("contact_email is not an email address")
        return problems

    def link(self, reference: str, secret: str) -> LinkOutcome:
        raise CredentialsRefused(RefusalReason.UNKNOWN_ACCOUNT, "the email connector links no account")

    def refresh(self, reference: str) -> LinkOutcome:
        raise CredentialsRefused(RefusalReason.UNKNOWN_ACCOUNT, "the email connector links no account")

    def provision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(False, "the email connector provisions nothing")

    def deprovision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(False, "the email connector provisions nothing")

    def export(self, reference: str | None, *, subject: str = "") -> dict[str, Any]:
        raise PartnerProtocolError("the email connector answers later: send_rights_request")

    def erase(self, reference: str | None, *, subject: str = "", idempotency_key: str) -> ErasureOutcome:
        return ErasureOutcome(ErasureState.NOT_SUPPORTED, "the email connector answers later")

    def health(self) -> Health:
        problems = self.check_config(self.config, self.secrets)
        return Health(not problems, "; ".join(problems) or "configured: requests go by email")

    def send_rights_request(self, ask: RightsAsk) -> str:
        contact = _contact(self.config)
        if self.check_config(self.config, self.secrets):
            raise PartnerProtocolError("the email connector is not configured")
        controller = settings.CONSENT_CONTROLLER
        send_email(
            to=contact,
            template=TEMPLATE,
            context={
                "kind": ask.kind,
                "reference": ask.request_id,
                "requested_at": ask.requested_at,
                "due_on": ask.due_on,
                "subject": ask.subject,
                "card_number": ask.reference or "",
                "contact_name": str(self.config.get("contact_name") or ""),
                "controller": controller,
            },
            language=LANGUAGE,
        )
        return f"{ask.kind} request emailed to the partner's data-protection contact"
