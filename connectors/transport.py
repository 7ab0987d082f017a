"""The transport connector: a resident's Naolib subscription (Libertan card), checked over the
HTTP contract of docs/connectors/transport.md (OpenAPI: docs/connectors/transport.openapi.yaml).

Configuration of a `PartnerConnector` of kind "transport" (docs/operators.md):

- `config` (non-secret): `base_url` (required: https, or http on a loopback address for the
  simulator), `connect_timeout`, `read_timeout`;
- `secrets`: `api_key` (required): the key the operator issued us, sent as
  `Authorization: Bearer <api_key>` over TLS.

The proof a resident gives when linking is their family name and birth date, as printed on
the operator's records: `link_secret(family_name=, birth_date=)` turns them into the
protocol's `secret` string (JSON), which is never stored, logged or audited. The birth date
is only sent to the operator.

Every request goes through `common.outbound` (no redirects followed), with short capped
timeouts (`MAX_CONNECT_TIMEOUT`, `MAX_READ_TIMEOUT`: the resident's page waits on `link` and
`refresh`) and a size limit on answers (`MAX_ANSWER_BYTES`). Writes (erasure) carry the
outbox message's idempotency key in `Idempotency-Key`: the operator applies a key once.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from ipaddress import ip_address
from typing import Any
from urllib.parse import quote, urlsplit

from django.utils.translation import gettext_lazy

from common.outbound import open_without_redirects
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

KIND = "transport"
DEFAULT_TIMEOUT = 3.0
MAX_TIMEOUT = 5.0
MAX_ANSWER_BYTES = 64 * 1024
MIN_CARD_LENGTH = 8
MAX_CARD_LENGTH = 20
MAX_FAMILY_NAME_LENGTH = 100
USER_AGENT = "compte-unique-metropolitain/1 (transport connector)"

# The operator's `result` values (docs/connectors/transport.md, "Checking a card").
RESULT_CONTRACT = "contract"
RESULT_NO_CONTRACT = "no_contract"
RESULT_NOT_MATCHING = "not_matching"
RESULT_REPLACED = "replaced"
RESULT_UNKNOWN = "unknown"  # status calls only: the card is no longer known


def link_secret(*, family_name: str, birth_date: date) -> str:
    """The protocol's `secret` for a transport link: the resident's family name and birth date."""
    return json.dumps({"family_name": family_name.strip(), "birth_date": birth_date.isoformat()})


def _proof_of(secret: str) -> dict[str, str]:
    try:
        value = json.loads(secret)
        family_name = str(value["family_name"]).strip()
        birth_date = date.fromisoformat(str(value["birth_date"]))
    except (ValueError, KeyError, TypeError):
        raise CredentialsRefused(RefusalReason.NOT_MATCHING) from None
    if not family_name or len(family_name) > MAX_FAMILY_NAME_LENGTH:
        raise CredentialsRefused(RefusalReason.NOT_MATCHING)
    return {"family_name": family_name, "birth_date": birth_date.isoformat()}


@dataclass(frozen=True)
class TransportConfig:
    base_url: str
    api_key: str
    timeout: float


def _timeout(config: Mapping[str, Any], key: str) -> float:
    try:
        value = float(config.get(key, DEFAULT_TIMEOUT))
    except (TypeError, ValueError):
        raise ConnectorConfigError(f"{key} is not a number") from None
    if value <= 0:
        raise ConnectorConfigError(f"{key} must be positive")
    return min(value, MAX_TIMEOUT)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def transport_config(config: Mapping[str, Any], secrets: Mapping[str, str]) -> TransportConfig:
    """The client's settings (ConnectorConfigError if unusable)."""
    base_url = str(config.get("base_url") or "").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConnectorConfigError("base_url must be an https URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConnectorConfigError("base_url must be https (http only on a loopback address)")
    if parts.query or parts.fragment or parts.username:
        raise ConnectorConfigError("base_url takes no query, fragment or credentials")
    api_key = secrets.get("api_key") or ""
    if not api_key:
        raise ConnectorConfigError("the api_key secret is required")
    timeout = max(_timeout(config, "connect_timeout"), _timeout(config, "read_timeout"))
    return TransportConfig(base_url=base_url, api_key=api_key, timeout=timeout)


class TransportClient:
    """The HTTP client of the contract: JSON in, JSON or RFC 7807 problems out."""

    def __init__(self, config: TransportConfig) -> None:
        self.config = config

    def call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, idempotency_key: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON object). PartnerUnavailable: no answer in time, 5xx, 429, our key
        refused; PartnerProtocolError: an answer that is not the contract's JSON."""
        headers = {
            "Authorization": f"Bearer {self.config.api_key}",
            "Accept": "application/json, application/problem+json",
            "User-Agent": USER_AGENT,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(  # noqa: S310 - base_url is checked: http(s) only
            self.config.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with open_without_redirects(request, timeout=self.config.timeout) as response:
                status, raw = response.status, response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read(MAX_ANSWER_BYTES + 1)
            except (OSError, TimeoutError):
                raw = b""
            finally:
                exc.close()
        except TimeoutError:
            raise PartnerUnavailable("timeout", code="partner_timeout") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PartnerUnavailable(type(exc).__name__) from None
        return self._checked(status, raw)

    def _checked(self, status: int, raw: bytes) -> tuple[int, dict[str, Any]]:
        if status in {401, 403}:
            raise PartnerUnavailable("our API key was refused", code="partner_login_refused")
        if status == 429 or status >= 500:
            raise PartnerUnavailable(f"HTTP {status}")
        if 300 <= status < 400:
            raise PartnerProtocolError(f"unexpected redirect {status}")
        if len(raw) > MAX_ANSWER_BYTES:
            raise PartnerProtocolError("answer too large")
        try:
            value = json.loads(raw)
        except ValueError:
            raise PartnerProtocolError(f"HTTP {status}: not JSON") from None
        if not isinstance(value, dict):
            raise PartnerProtocolError(f"HTTP {status}: not a JSON object")
        return status, value


def _date(value: Any, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise PartnerProtocolError(f"{name} is not a date") from None


def _contract(answer: Mapping[str, Any]) -> dict[str, Any]:
    contract = answer.get("contract")
    if not isinstance(contract, dict) or not isinstance(contract.get("type"), str):
        raise PartnerProtocolError("contract without a type")
    valid_until = _date(contract.get("valid_until"), "valid_until")
    if valid_until is None:
        raise PartnerProtocolError("contract without valid_until")
    return {
        "type": contract["type"][:40],
        "label": str(contract.get("label") or "")[:120],
        "valid_from": _date(contract.get("valid_from"), "valid_from"),
        "valid_until": valid_until,
    }


def _replacement(answer: Mapping[str, Any]) -> str:
    replacement = answer.get("replacement")
    masked = replacement.get("masked_card_number") if isinstance(replacement, dict) else None
    if not isinstance(masked, str) or not masked or len(masked) > 32:
        raise PartnerProtocolError("replaced without the new card's masked number")
    return masked


class CardReplaced(CredentialsRefused):
    """The card was replaced: `masked_replacement` is the new card's masked number."""

    def __init__(self, masked_replacement: str) -> None:
        super().__init__(RefusalReason.REPLACED)
        self.masked_replacement = masked_replacement


@register
class TransportConnector(Connector):
    kind = KIND
    resident_label = gettext_lazy("carte Libertan")
    config_keys = ("base_url", "connect_timeout", "read_timeout")
    secret_keys = ("api_key",)

    @classmethod
    def check_config(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
        problems = [f"unknown setting {key!r}" for key in config if key not in cls.config_keys]
        problems += [f"unknown secret {key!r}" for key in secrets if key not in cls.secret_keys]
        try:
            transport_config(config, secrets)
        except ConnectorConfigError as exc:
            problems.append(str(exc))
        return problems

    def _client(self) -> TransportClient:
        return TransportClient(transport_config(self.config, self.secrets))

    def normalise_reference(self, reference: str) -> str:
        value = super().normalise_reference(reference)
        if not (value.isascii() and value.isdigit()) or not MIN_CARD_LENGTH <= len(value) <= MAX_CARD_LENGTH:
            raise InvalidReference("a Libertan card number is 8 to 20 digits")
        return value

    def _outcome(self, card: str, answer: Mapping[str, Any]) -> LinkOutcome:
        contract = _contract(answer)
        expired = contract["valid_until"] < date.today()
        return LinkOutcome(
            status=LinkStatus.EXPIRED if expired else LinkStatus.VALID,
            masked_reference=mask_reference(card),
            expires_on=contract["valid_until"],
            attributes={
                "contract_type": contract["type"],
                "contract_label": contract["label"],
                "valid_from": contract["valid_from"].isoformat() if contract["valid_from"] else None,
            },
        )

    def link(self, reference: str, secret: str) -> LinkOutcome:
        card = self.normalise_reference(reference)
        proof = _proof_of(secret)
        _status, answer = self._client().call("POST", "/v1/card-checks", {"card_number": card, **proof})
        result = answer.get("result")
        if result == RESULT_CONTRACT:
            # Expired contracts are linked too (the details matched): the resident sees it.
            return self._outcome(card, answer)
        if result == RESULT_NO_CONTRACT:
            raise CredentialsRefused(RefusalReason.NO_CONTRACT)
        if result == RESULT_NOT_MATCHING:
            raise CredentialsRefused(RefusalReason.NOT_MATCHING)
        if result == RESULT_REPLACED:
            raise CardReplaced(_replacement(answer))
        raise PartnerProtocolError("unknown result")

    def refresh(self, reference: str) -> LinkOutcome:
        card = self.normalise_reference(reference)
        _status, answer = self._client().call("POST", "/v1/card-status", {"card_number": card})
        result = answer.get("result")
        if result == RESULT_CONTRACT:
            return self._outcome(card, answer)
        if result == RESULT_NO_CONTRACT:
            masked = mask_reference(card)
            none: dict[str, Any] = {"contract": None}
            return LinkOutcome(status=LinkStatus.EXPIRED, masked_reference=masked, attributes=none)
        if result == RESULT_REPLACED:
            return LinkOutcome(
                status=LinkStatus.UNLINKED,
                masked_reference=mask_reference(card),
                attributes={"replaced_by": _replacement(answer)},
            )
        if result == RESULT_UNKNOWN:
            return LinkOutcome(status=LinkStatus.UNLINKED, masked_reference=mask_reference(card))
        raise PartnerProtocolError("unknown result")

    def provision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(False, "the transport contract only reads subscriptions")

    def deprovision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(False, "the operator keeps no record of our links: nothing to tell")

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
        if reference is None:
            return ErasureOutcome(
                ErasureState.NOT_SUPPORTED,
                "no card number: the resident linked no card here, the operator cannot be asked by name",
            )
        card = self.normalise_reference(reference)
        status, answer = self._client().call(
            "POST", "/v1/erasure-requests", {"card_number": card}, idempotency_key=idempotency_key
        )
        state = answer.get("status")
        if status in {200, 201, 202} and state == "completed":
            return ErasureOutcome(ErasureState.ERASED, "the operator confirmed the erasure")
        if status in {200, 201, 202} and state == "refused":
            reason = str(answer.get("reason") or "")[:200]
            return ErasureOutcome(ErasureState.REFUSED, f"the operator refused: {reason}")
        raise PartnerProtocolError(f"HTTP {status}: unexpected erasure answer")

    def replacement_notices(self, since: str = "") -> tuple[list[tuple[str, str]], str]:
        """The operator's card replacement notices after the cursor `since` (contract §6):
        [(replaced card number, the new card masked)], and the next cursor."""
        path = "/v1/replacement-notices" + (f"?since={quote(since)}" if since else "")
        _status, answer = self._client().call("GET", path)
        notices = answer.get("notices")
        if not isinstance(notices, list):
            raise PartnerProtocolError("notices is not a list")
        found = []
        for notice in notices:
            card = notice.get("card_number") if isinstance(notice, dict) else None
            masked = notice.get("masked_replacement") if isinstance(notice, dict) else None
            if not isinstance(card, str) or not isinstance(masked, str) or len(masked) > 32:
                raise PartnerProtocolError("a notice without card_number or masked_replacement")
            found.append((self.normalise_reference(card), masked))
        return found, str(answer.get("next") or "")

    def health(self) -> Health:
        try:
            status, answer = self._client().call("GET", "/v1/health")
        except (PartnerUnavailable, PartnerProtocolError, ConnectorConfigError) as exc:
            return Health(False, exc.code)
        ok = status == 200 and answer.get("status") == "ok"
        return Health(ok, "ok" if ok else "not ok")
