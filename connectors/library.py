"""The library connector: a resident's library card, checked over SIP2 (connectors.sip2).

Configuration of a `PartnerConnector` of kind "library" (docs/operators.md):

- `config` (non-secret): `host`, `port`, `institution_id` (required); `login_user`,
  `location_code`, `use_tls`, `tls_server_name`, `expiry_field` ("PA", or "" when the site
  sends no expiry), `encoding`, `connect_timeout`, `read_timeout`, `release_card_number`
  (the partner's claim carries the card number: only for a partner that needs it);
- `secrets`: `login_password` (with `login_user`), `terminal_password`.

A resident waits on the page while we ask the library: the timeouts are short and capped
(`MAX_CONNECT_TIMEOUT`, `MAX_READ_TIMEOUT`, the pool's wait `POOL_WAIT`), and we send one
message per check (63 patron information, no 35 end of session: it would add a wait after
the answer we need; no self-check session is opened by a 63). Worst case for a server that
answers each step just before its timeout: the pool's wait, the connection, the login's
answer and the 63's answer with one retry; a server that is merely slow fails at the first
timeout.

SIP2 reads only: it cannot create, deactivate or erase a patron. `provision`, `deprovision`
and `erase` say so (ErasureState.NOT_SUPPORTED), never pretend; the library's own patron
record is the library's processing, which the resident asks the library about.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from django.utils.translation import gettext_lazy

from connectors.protocol import (
    Connector,
    ConnectorConfigError,
    CredentialsRefused,
    ErasureOutcome,
    ErasureState,
    Health,
    InvalidReference,
    LinkOutcome,
    LinkStatus,
    PartnerProtocolError,
    PartnerUnavailable,
    ProvisionOutcome,
    RefusalReason,
    mask_reference,
)
from connectors.registry import register
from connectors.sip2 import client as sip2
from connectors.sip2 import codec as sip2_codec
from connectors.sip2 import errors as sip2_errors

KIND = "library"
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 3.0
MAX_CONNECT_TIMEOUT = 3.0
MAX_READ_TIMEOUT = 4.0
POOL_WAIT = 1.0
MAX_CARD_LENGTH = 32
MAX_PIN_LENGTH = 32


def _timeout(config: Mapping[str, Any], key: str, default: float, ceiling: float) -> float:
    try:
        value = float(config.get(key, default))
    except (TypeError, ValueError):
        raise ConnectorConfigError(f"{key} is not a number") from None
    if value <= 0:
        raise ConnectorConfigError(f"{key} must be positive")
    return min(value, ceiling)


def sip2_config(config: Mapping[str, Any], secrets: Mapping[str, str]) -> sip2.Sip2Config:
    """The `Sip2Config` of a partner's connector configuration (ConnectorConfigError if unusable)."""
    try:
        port = int(config.get("port", 0))
    except (TypeError, ValueError):
        raise ConnectorConfigError("port is not a number") from None
    login_user = str(config.get("login_user") or "") or None
    expiry_field = config.get("expiry_field", "PA")
    try:
        return sip2.Sip2Config(
            host=str(config.get("host") or ""),
            port=port,
            institution_id=str(config.get("institution_id") or ""),
            login_user=login_user,
            login_password=(secrets.get("login_password") or "") if login_user else None,
            location_code=str(config.get("location_code") or ""),
            terminal_password=secrets.get("terminal_password") or None,
            use_tls=bool(config.get("use_tls", False)),
            tls_server_name=str(config.get("tls_server_name") or "") or None,
            connect_timeout=_timeout(config, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, MAX_CONNECT_TIMEOUT),
            read_timeout=_timeout(config, "read_timeout", DEFAULT_READ_TIMEOUT, MAX_READ_TIMEOUT),
            expiry_field=str(expiry_field) if expiry_field else None,
            encoding=str(config.get("encoding") or sip2_codec.DEFAULT_ENCODING),
            pool_wait=POOL_WAIT,
        )
    except ValueError as exc:
        raise ConnectorConfigError(str(exc)) from None


def _status_of(patron: sip2.PatronStatus) -> LinkStatus:
    if patron.expired:
        return LinkStatus.EXPIRED
    if patron.blocked:
        return LinkStatus.BLOCKED
    return LinkStatus.VALID


@register
class LibraryConnector(Connector):
    kind = KIND
    resident_label = gettext_lazy("carte de bibliothèque")
    config_keys = (
        "host",
        "port",
        "institution_id",
        "login_user",
        "location_code",
        "use_tls",
        "tls_server_name",
        "expiry_field",
        "encoding",
        "connect_timeout",
        "read_timeout",
        "release_card_number",
    )
    secret_keys = ("login_password", "terminal_password")

    @classmethod
    def check_config(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
        problems = [f"unknown setting {key!r}" for key in config if key not in cls.config_keys]
        problems += [f"unknown secret {key!r}" for key in secrets if key not in cls.secret_keys]
        try:
            settings = sip2_config(config, secrets)
        except ConnectorConfigError as exc:
            return [*problems, str(exc)]
        if settings.login_user and not secrets.get("login_password"):
            problems.append("login_user needs the login_password secret")
        return problems

    def _client(self) -> sip2.Sip2Client:
        return sip2.client_for(sip2_config(self.config, self.secrets))

    def normalise_reference(self, reference: str) -> str:
        value = super().normalise_reference(reference)
        if len(value) > MAX_CARD_LENGTH or not value.isprintable():
            raise InvalidReference("card number too long or not printable")
        return value

    def _patron(self, card: str, pin: str | None) -> sip2.PatronStatus:
        client = self._client()
        try:
            info = client.patron_information(card, pin)
        except sip2_errors.FieldValueError:
            raise InvalidReference("a character SIP2 cannot carry") from None
        except sip2_errors.Unavailable as exc:
            raise PartnerUnavailable(type(exc).__name__) from None
        except sip2_errors.LoginRefused:
            raise PartnerUnavailable("our SIP login was refused", code="partner_login_refused") from None
        except sip2_errors.TlsError:
            raise PartnerUnavailable("TLS handshake failed", code="partner_tls_error") from None
        except sip2_errors.Sip2Error as exc:  # ProtocolError, ChecksumError
            raise PartnerProtocolError(type(exc).__name__) from None
        return sip2.patron_status_of(info, today=date.today(), institution=client.config.institution_id)

    def _outcome(self, card: str, patron: sip2.PatronStatus) -> LinkOutcome:
        attributes: dict[str, Any] = {}
        if patron.block_reasons:
            attributes["block_reasons"] = sorted(patron.block_reasons)
        return LinkOutcome(
            status=_status_of(patron),
            masked_reference=mask_reference(card),
            expires_on=patron.expiry,
            attributes=attributes,
        )

    def link(self, reference: str, secret: str) -> LinkOutcome:
        card = self.normalise_reference(reference)
        if not secret or len(secret) > MAX_PIN_LENGTH:
            raise CredentialsRefused(RefusalReason.WRONG_SECRET)
        patron = self._patron(card, secret)
        if not patron.valid_card:
            raise CredentialsRefused(RefusalReason.UNKNOWN_ACCOUNT)
        if patron.pin_ok is False:
            raise CredentialsRefused(RefusalReason.WRONG_SECRET)
        if patron.pin_ok is None:
            # The library did not confirm the PIN: nothing proves the card is the resident's.
            # A blocked or expired card is the likely cause (some sites check no PIN then).
            if patron.expired:
                raise CredentialsRefused(RefusalReason.EXPIRED)
            if patron.blocked:
                raise CredentialsRefused(RefusalReason.BLOCKED)
            raise CredentialsRefused(RefusalReason.WRONG_SECRET)
        # PIN confirmed: the card is the resident's, linked with its status (blocked or
        # expired cards too: the resident sees it, and the partner's claim says valid: false).
        return self._outcome(card, patron)

    def refresh(self, reference: str) -> LinkOutcome:
        card = self.normalise_reference(reference)
        patron = self._patron(card, None)  # no PIN: our SIP account may read the card
        if not patron.valid_card:
            return LinkOutcome(status=LinkStatus.UNLINKED, masked_reference=mask_reference(card))
        return self._outcome(card, patron)

    def provision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(False, "SIP2 has no message to create or update a patron")

    def deprovision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(
            False, "SIP2 has no message to deactivate a patron: nothing to tell the library"
        )

    def export(self, reference: str | None, *, subject: str = "") -> dict[str, Any]:
        if reference is None:
            return {}  # no card linked: nothing we can ask about
        outcome = self.refresh(reference)
        return {
            "status": str(outcome.status),
            "expires_on": outcome.expires_on.isoformat() if outcome.expires_on else None,
            "attributes": dict(outcome.attributes),
        }

    def erase(self, reference: str | None, *, subject: str = "", idempotency_key: str) -> ErasureOutcome:
        return ErasureOutcome(
            ErasureState.NOT_SUPPORTED,
            "SIP2 has no erasure message: the library system cannot be asked over SIP2. We only "
            "read the card's status (nothing was written at the library); the link was erased "
            "here. The library's own patron record is its own processing: configure the "
            "library's email connector (kind email) to send the request to its data-protection "
            "contact; without one, the resident asks the library or an operator forwards it.",
        )

    def health(self) -> Health:
        try:
            status = self._client().sc_status()
        except sip2_errors.Sip2Error as exc:
            return Health(False, type(exc).__name__)
        except ConnectorConfigError as exc:
            return Health(False, str(exc))
        return Health(status.online, "online" if status.online else "offline")
