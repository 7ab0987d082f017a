"""The cultural-ticketing connector: a resident's reduced-price eligibility (the City's Carte
Blanche) held by the ticketing platform, the export of their ticketing data and their erasure,
over the HTTP contract of docs/connectors/ticketing.md (OpenAPI:
docs/connectors/ticketing.openapi.yaml).

The platform signs residents in through our OpenID provider: it knows each resident by the
`sub` its client receives (pairwise, connectors.subjects), and that subject is how export and
erasure name the resident. The Carte Blanche is linked from Mon compte with its number and
the holder's birth date (`link_secret(birth_date=)`, never stored, logged or audited; only
sent to the platform). The platform answers `eligible` (scheme, label, valid until),
`not_eligible` (the card is known and the birth date matches, but no eligibility is current:
the card is linked, without eligibility) or `not_matching` (unknown card or wrong birth date:
never which). Only the scheme's code and label and the validity dates are read from the
platform's answers: never income or resource data, which the contract does not carry and
this module would not keep if sent.

Configuration of a `PartnerConnector` of kind "ticketing" (docs/operators.md): as every
contract client (connectors.http_contract): `base_url`, `connect_timeout`, `read_timeout`,
and the secret `api_key`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import quote

from django.utils.translation import gettext_lazy

from connectors.http_contract import (
    CONFIG_KEYS,
    SECRET_KEYS,
    ContractClient,
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

KIND = "ticketing"
MIN_CARD_LENGTH = 8
MAX_CARD_LENGTH = 20
MAX_SUBJECT_LENGTH = 255
MAX_EXPORT_BYTES = 1024 * 1024  # a resident's order history may be long
USER_AGENT = "compte-unique-metropolitain/1 (ticketing connector)"
SCHEME_PATTERN = re.compile(r"[a-z0-9_]{1,40}")

# The platform's `result` values (docs/connectors/ticketing.md, "Checking a card").
RESULT_ELIGIBLE = "eligible"
RESULT_NOT_ELIGIBLE = "not_eligible"
RESULT_NOT_MATCHING = "not_matching"
RESULT_UNKNOWN = "unknown"  # status calls only: the card is no longer known
EXPORT_LISTS = ("orders", "tickets", "reduced_price_uses")


def link_secret(*, birth_date: date) -> str:
    """The protocol's `secret` for a Carte Blanche link: the holder's birth date."""
    return json.dumps({"birth_date": birth_date.isoformat()})


def _birth_date_of(secret: str) -> str:
    try:
        return date.fromisoformat(str(json.loads(secret)["birth_date"])).isoformat()
    except (ValueError, KeyError, TypeError):
        raise CredentialsRefused(RefusalReason.NOT_MATCHING) from None


def eligibility_of(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The eligibility of an `eligible` answer, as we keep it: scheme code and label, validity
    dates; anything else the platform might send is dropped."""
    value = answer.get("eligibility")
    if not isinstance(value, dict):
        raise PartnerProtocolError("eligible without an eligibility")
    scheme = value.get("scheme")
    if not isinstance(scheme, str) or not SCHEME_PATTERN.fullmatch(scheme):
        raise PartnerProtocolError("eligibility without a scheme code")
    valid_until = answer_date(value.get("valid_until"), "valid_until")
    if valid_until is None:
        raise PartnerProtocolError("eligibility without valid_until")
    valid_from = answer_date(value.get("valid_from"), "valid_from")
    return {
        "scheme": scheme,
        "label": str(value.get("label") or "")[:120],
        "valid_from": valid_from.isoformat() if valid_from else None,
        "valid_until": valid_until,
    }


def _subject(subject: str) -> str:
    if not subject or len(subject) > MAX_SUBJECT_LENGTH or not subject.isprintable():
        raise InvalidReference("not a usable subject")
    return subject


def _records(answer: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    value = answer.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PartnerProtocolError(f"{name} is not a list of objects")
    return value


@register
class TicketingConnector(Connector):
    kind = KIND
    resident_label = gettext_lazy("Carte Blanche")
    config_keys = CONFIG_KEYS
    secret_keys = SECRET_KEYS

    @classmethod
    def check_config(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
        return config_problems(config, secrets, config_keys=cls.config_keys, secret_keys=cls.secret_keys)

    def _client(self, *, max_answer_bytes: int | None = None) -> ContractClient:
        config = contract_config(self.config, self.secrets)
        if max_answer_bytes is None:
            return ContractClient(config, user_agent=USER_AGENT)
        return ContractClient(config, user_agent=USER_AGENT, max_answer_bytes=max_answer_bytes)

    def normalise_reference(self, reference: str) -> str:
        value = super().normalise_reference(reference)
        if not (value.isascii() and value.isdigit()) or not MIN_CARD_LENGTH <= len(value) <= MAX_CARD_LENGTH:
            raise InvalidReference("a Carte Blanche number is 8 to 20 digits")
        return value

    def _outcome(self, card: str, answer: Mapping[str, Any]) -> LinkOutcome:
        result = answer.get("result")
        if result == RESULT_NOT_ELIGIBLE:
            # Known card, no current eligibility: linked, so that a refresh shows a new one.
            return LinkOutcome(status=LinkStatus.EXPIRED, masked_reference=mask_reference(card))
        if result != RESULT_ELIGIBLE:
            raise PartnerProtocolError("unknown result")
        eligibility = eligibility_of(answer)
        expired = eligibility["valid_until"] < date.today()
        return LinkOutcome(
            status=LinkStatus.EXPIRED if expired else LinkStatus.VALID,
            masked_reference=mask_reference(card),
            expires_on=eligibility["valid_until"],
            attributes={
                "scheme": eligibility["scheme"],
                "scheme_label": eligibility["label"],
                "valid_from": eligibility["valid_from"],
            },
        )

    def link(self, reference: str, secret: str) -> LinkOutcome:
        card = self.normalise_reference(reference)
        birth_date = _birth_date_of(secret)
        _status, answer = self._client().call(
            "POST", "/v1/eligibility-checks", {"card_number": card, "birth_date": birth_date}
        )
        if answer.get("result") == RESULT_NOT_MATCHING:
            raise CredentialsRefused(RefusalReason.NOT_MATCHING)
        return self._outcome(card, answer)

    def refresh(self, reference: str) -> LinkOutcome:
        card = self.normalise_reference(reference)
        _status, answer = self._client().call("POST", "/v1/eligibility-status", {"card_number": card})
        if answer.get("result") == RESULT_UNKNOWN:
            return LinkOutcome(status=LinkStatus.UNLINKED, masked_reference=mask_reference(card))
        return self._outcome(card, answer)

    def provision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(False, "the platform creates accounts at the resident's first sign-in")

    def deprovision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(False, "the platform keeps no record of our links: nothing to tell")

    def _eligibility_export(self, reference: str) -> dict[str, Any]:
        outcome = self.refresh(reference)
        return {
            "masked_card_number": outcome.masked_reference,
            "status": str(outcome.status),
            "scheme": outcome.attributes.get("scheme"),
            "scheme_label": outcome.attributes.get("scheme_label"),
            "valid_from": outcome.attributes.get("valid_from"),
            "valid_until": outcome.expires_on.isoformat() if outcome.expires_on else None,
        }

    def export(self, reference: str | None, *, subject: str = "") -> dict[str, Any]:
        """The resident's ticketing data by subject (orders, tickets, reduced-price uses), and
        the eligibility record of their Carte Blanche when they linked one."""
        data: dict[str, Any] = {}
        if subject:
            path = f"/v1/residents/{quote(_subject(subject), safe='')}/data"
            _status, answer = self._client(max_answer_bytes=MAX_EXPORT_BYTES).call("GET", path)
            data.update({name: _records(answer, name) for name in EXPORT_LISTS})
        if reference is not None:
            data["eligibility"] = self._eligibility_export(reference)
        return data

    def erase(self, reference: str | None, *, subject: str = "", idempotency_key: str) -> ErasureOutcome:
        if not subject and reference is None:
            return ErasureOutcome(
                ErasureState.NOT_SUPPORTED,
                "no subject and no card: the platform cannot be asked about this resident",
            )
        body: dict[str, Any] = {}
        if subject:
            body["subject"] = _subject(subject)
        if reference is not None:
            body["card_number"] = self.normalise_reference(reference)
        status, answer = self._client().call(
            "POST", "/v1/erasure-requests", body, idempotency_key=idempotency_key
        )
        state = answer.get("status")
        if status in {200, 201, 202} and state == "completed":
            kept = answer.get("kept") or []
            if not isinstance(kept, list) or not all(isinstance(item, str) for item in kept):
                raise PartnerProtocolError("kept is not a list of strings")
            detail = "the platform confirmed the erasure"
            if kept:
                detail += "; kept: " + "; ".join(item[:200] for item in kept[:10])
            return ErasureOutcome(ErasureState.ERASED, detail)
        if status in {200, 201, 202} and state == "refused":
            reason = str(answer.get("reason") or "")[:200]
            return ErasureOutcome(ErasureState.REFUSED, f"the platform refused: {reason}")
        raise PartnerProtocolError(f"HTTP {status}: unexpected erasure answer")

    def health(self) -> Health:
        try:
            status, answer = self._client().call("GET", "/v1/health")
        except (PartnerUnavailable, PartnerProtocolError, ConnectorConfigError) as exc:
            return Health(False, exc.code)
        ok = status == 200 and answer.get("status") == "ok"
        return Health(ok, "ok" if ok else "not ok")
