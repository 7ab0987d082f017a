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

Every request goes through the shared contract client (connectors.http_contract:
`common.outbound`, no redirects followed, short capped timeouts — the resident's page waits
on `link` and `refresh` — and a size limit on answers). Writes (erasure) carry the outbox
message's idempotency key in `Idempotency-Key`: the operator applies a key once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import quote

from django.utils.translation import gettext_lazy

from connectors.http_contract import (
    CONFIG_KEYS,
    SECRET_KEYS,
    ContractClient,
    ContractConfig,
    answer_date,
    config_problems,
    contract_config,
)
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


# The shared contract client (connectors.http_contract), under the names this module had.
TransportConfig = ContractConfig
transport_config = contract_config


class TransportClient(ContractClient):
    """The HTTP client of the transport contract (connectors.http_contract.ContractClient)."""

    def __init__(self, config: ContractConfig) -> None:
        super().__init__(config, user_agent=USER_AGENT)


_date = answer_date


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
    config_keys = CONFIG_KEYS
    secret_keys = SECRET_KEYS

    @classmethod
    def check_config(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
        return config_problems(config, secrets, config_keys=cls.config_keys, secret_keys=cls.secret_keys)

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
