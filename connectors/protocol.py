"""The connector protocol: what every partner connector implements.

A connector is the code that speaks one kind of partner system (a library system over SIP2
today). It is configured per partner client (connectors.models.PartnerConnector: its
non-secret `config` and its decrypted `secrets`) and knows nothing of Django's request, of
our models or of the resident's account: it takes the partner reference (a card number)
and, when linking, the secret that proves the resident holds it (a PIN; for the transport
kind, the family name and birth date as `connectors.transport.link_secret` encodes them),
never stored, and answers typed
outcomes or raises typed errors. Services (connectors.links) store, throttle and audit;
views turn the errors into messages.

    ConnectorError
    ├── CredentialsRefused   the partner refused the resident's credentials: `reason` is
    │                        wrong_secret, unknown_account, blocked, expired; no_contract,
    │                        not_matching, replaced (transport)
    ├── PartnerUnavailable   the partner did not answer (down, too slow, refused our own
    │                        account or TLS): try again later
    └── PartnerProtocolError the partner answered something we cannot read (garbage)

Every method that may wait on the partner is bounded by the connector's own timeouts: the
resident's page calls `link` and `refresh` directly.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar


class LinkStatus(enum.StrEnum):
    VALID = "valid"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    UNLINKED = "unlinked"  # the partner no longer knows the reference


class RefusalReason(enum.StrEnum):
    WRONG_SECRET = "wrong_secret"
    UNKNOWN_ACCOUNT = "unknown_account"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    NO_CONTRACT = "no_contract"  # transport: the card holds no subscription
    NOT_MATCHING = "not_matching"  # transport: unknown card or details not matching (never which)
    REPLACED = "replaced"  # transport: the card was replaced by another


class ErasureState(enum.StrEnum):
    """A partner's answer to an erasure request (kept in the rights request's progress)."""

    ERASED = "erased"  # the partner confirmed the erasure
    NOT_SUPPORTED = "not_supported"  # the partner's protocol has no way to ask: operator action
    REFUSED = "refused"  # the partner refused (a legal obligation to keep): its reason is recorded
    REQUESTED = "requested"  # asked by a channel that answers later (email): an operator records it


class ExportState(enum.StrEnum):
    """A partner's answer to an export request (kept in the rights request's progress; its data
    encrypted in consent.RightsPartnerData)."""

    ANSWERED = "answered"  # the partner's data arrived
    REQUESTED = "requested"  # asked by a channel that answers later (email): an operator records it
    REFUSED = "refused"  # the partner refused: its reason is recorded
    NOT_SUPPORTED = "not_supported"  # the partner's protocol has no way to ask
    FAILED = "failed"  # garbage, or still unreachable after the outbox's attempts


@dataclass(frozen=True)
class LinkOutcome:
    """What the partner says of a resident's account. Never holds the secret (PIN); the
    reference appears only masked. `attributes` are non-secret facts worth keeping (block
    reasons); never the resident's name or contact details from the partner."""

    status: LinkStatus
    masked_reference: str
    expires_on: date | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class ErasureOutcome:
    state: ErasureState
    detail: str = ""  # English, for operators and the DPO; no personal data


@dataclass(frozen=True)
class ProvisionOutcome:
    done: bool  # False: the partner's protocol has nothing to provision (said in `detail`)
    detail: str = ""


@dataclass(frozen=True)
class RightsAsk:
    """A rights request sent to a partner that answers later (AnswersLater): our reference
    (the rights request's id), what is asked ("export" or "erasure"), when, the date the
    answer is due (GDPR Art. 12(3): one month), and what identifies the resident there."""

    kind: str
    request_id: str
    requested_at: datetime
    due_on: date
    subject: str = ""  # the `sub` the partner client knows the resident by
    reference: str | None = None  # the card number the resident linked at this partner, if any


class ConnectorError(Exception):
    """Any failure of a connector. Messages never hold a reference or a secret."""

    code = "connector_error"


class CredentialsRefused(ConnectorError):
    code = "credentials_refused"

    def __init__(self, reason: RefusalReason, message: str = "") -> None:
        super().__init__(message or f"credentials refused: {reason}")
        self.reason = reason


class PartnerUnavailable(ConnectorError):
    """The partner did not answer in time, or refused our own connection (configuration)."""

    code = "partner_unavailable"

    def __init__(self, message: str = "", *, code: str = "partner_unavailable") -> None:
        super().__init__(message or code)
        self.code = code


class PartnerProtocolError(ConnectorError):
    code = "partner_protocol_error"


class InvalidReference(ConnectorError, ValueError):
    """A reference or secret that cannot be sent to the partner (wrong characters, length)."""

    code = "invalid_reference"


class ConnectorConfigError(ConnectorError, ValueError):
    """The partner connector's configuration is incomplete or wrong (the operator's to fix)."""

    code = "connector_misconfigured"


def mask_reference(reference: str, visible: int = 4) -> str:
    """ "•••• 0001": enough for a resident to recognise their card, not to use it."""
    tail = reference[-visible:] if len(reference) > visible else ""
    return f"•••• {tail}" if tail else "••••"


class Connector(ABC):
    """One partner system. Subclasses set `kind` and implement every method; a method the
    partner's protocol cannot honour says so in its outcome (never pretends)."""

    kind: ClassVar[str]
    # What a resident links with this kind, as Mon compte names it (a lazy translation, no
    # article: "carte de bibliothèque"); "" for kinds residents link nothing with (provisioning,
    # email). Read through connectors.registry.resident_labels().
    resident_label: ClassVar[Any] = ""
    # The non-secret configuration keys an operator may set, and the secret ones (admin).
    config_keys: ClassVar[tuple[str, ...]] = ()
    secret_keys: ClassVar[tuple[str, ...]] = ()
    # False: the kind links no resident account (the email connector): not offered on the
    # resident's cards page, `link` and `refresh` refuse.
    links_accounts: ClassVar[bool] = True

    def __init__(self, *, config: Mapping[str, Any], secrets: Mapping[str, str], partner: str) -> None:
        self.config = dict(config)
        self.secrets = dict(secrets)
        self.partner = partner  # the partner client's client_id (logs, outbox)

    @classmethod
    def check_config(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
        """Problems with a configuration, in English for the operator (empty: usable)."""
        return []

    def normalise_reference(self, reference: str) -> str:
        """The reference as the partner knows it (spaces removed…); InvalidReference if unusable."""
        value = "".join(reference.split())
        if not value:
            raise InvalidReference("empty reference")
        return value

    @abstractmethod
    def link(self, reference: str, secret: str) -> LinkOutcome:
        """Verify the resident's credentials at the partner (CredentialsRefused otherwise)."""

    @abstractmethod
    def refresh(self, reference: str) -> LinkOutcome:
        """The current status of a linked reference (no secret: it was never stored)."""

    @abstractmethod
    def provision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        """Create or update the resident's account at the partner, when the partner allows it."""

    @abstractmethod
    def deprovision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        """The resident unlinked the account: tell the partner, when its protocol allows it."""

    @abstractmethod
    def export(self, reference: str | None, *, subject: str = "") -> dict[str, Any]:
        """What the partner holds about the resident, as JSON values. `reference`: the linked
        account's (None: the resident linked none here); `subject`: the `sub` this partner
        client knows the resident by (connectors.subjects), for partners that name residents
        by their SSO id."""

    @abstractmethod
    def erase(self, reference: str | None, *, subject: str = "", idempotency_key: str) -> ErasureOutcome:
        """Ask the partner to erase the resident's data (reference None: none linked or already
        forgotten here; `subject` as for `export`)."""

    @abstractmethod
    def health(self) -> Health:
        """Is the partner reachable and answering (operators, monitoring)?"""


class AnswersLater(ABC):
    """A connector whose partner answers rights requests later, through a person (the email
    connector): the rights handlers call `send_rights_request` instead of `export` / `erase`,
    in the transaction that records the partner's state "requested"; an operator records the
    answer when it comes (connectors.partner_answers)."""

    @abstractmethod
    def send_rights_request(self, ask: RightsAsk) -> str:
        """Send the request (through the outbox, in the caller's transaction); returns a detail
        for operators and the DPO (English, no personal data)."""
