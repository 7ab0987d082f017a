"""Signed consent receipts: Kantara Consent Receipt v1.1 + ISO/IEC TS 27560 record, as a JWS.

`receipt_for_event(event)` returns a JWS compact serialisation (ES256, `kid` of the service
key published at /jwks.json, `typ` "consent-receipt+jwt") whose payload holds:

- `kantara`: the Kantara Initiative Consent Receipt v1.1 fields;
- `iso27560`: the consent record structure of ISO/IEC TS 27560:2023 (header, processing,
  parties, event log);
- `ledger`: the log id, the leaf index, the canonical leaf entry and its leaf hash, so that
  anyone can recompute SHA-256(0x00 || entry), compare it with `leaf_hash` and check it
  against an inclusion proof and a signed tree head (docs/ledger.md).

The receipt contains no personal data beyond the pseudonym: names and emails are not in
the ledger, and encrypted details appear only as ciphertext inside the entry.
`receipt_verify(jws)` checks the signature against the published keys and that the entry
hashes to the leaf hash; it returns the payload or raises `ReceiptInvalid`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from consent import ledger, merkle
from consent.models import DPV_CONSENT_STATUS, GRANTING_EVENTS, EventType, LedgerEvent, Purpose
from identity.keys import active_signing_key

RECEIPT_TYPE = "consent-receipt+jwt"
KANTARA_VERSION = "KI-CR-v1.1.0"
ISO_27560_SCHEMA = "ISO/IEC TS 27560:2023"
SERVICE_NAME = "Compte unique métropolitain"

_CONSENT_TYPE: dict[str, str] = {
    EventType.GIVEN: "EXPLICIT",
    EventType.RENEWED: "EXPLICIT",
    EventType.REFUSED: "EXPLICIT",
    EventType.WITHDRAWN: "EXPLICIT",
}


class ReceiptInvalid(ValueError):
    """`code` says why: a `ledger.SignatureInvalid` code, or "entry" (the receipt lacks its
    ledger entry, or the entry does not hash to its leaf hash)."""

    def __init__(self, message: str, code: str = "signature") -> None:
        super().__init__(message)
        self.code = code


def _iso_duration(start: datetime, end: datetime | None) -> str | None:
    if end is None:
        return None
    seconds = max(0, int((end - start).total_seconds()))
    days, rest = divmod(seconds, 86_400)
    return f"P{days}DT{rest}S" if rest else f"P{days}D"


def _controller() -> dict[str, Any]:
    controller = settings.CONSENT_CONTROLLER
    return {
        "piiController": controller["name"],
        "onBehalf": False,
        "contact": controller["contact"],
        "address": {"streetAddress": controller["address"], "addressCountry": "FR"},
        "email": controller["email"],
        "phone": controller["phone"],
        "piiControllerUrl": controller["url"],
    }


def _entity(event: LedgerEvent) -> str:
    if event.actor_type == "resident":
        return f"subject:{event.subject_id}"
    if event.actor_type == "staff":
        return f"staff:{event.actor_id}"
    if event.actor_type == "partner":
        return f"client:{event.actor_id}"
    return "controller"


def _termination(purpose: Purpose, event: LedgerEvent) -> str:
    until = ledger.format_time(event.valid_until)
    base = "Withdrawal at any time from the account (Mes consentements) or through the consent widget"
    return f"{base}; valid until {until}" if until else base


def receipt_claims(event: LedgerEvent) -> dict[str, Any]:
    purpose: Purpose = event.purpose
    partner = purpose.client if purpose.client_id else None
    categories = [category.get("en") or category.get("code") for category in purpose.data_categories]
    third_party = bool(partner) or any("Nantes Métropole" not in r for r in purpose.recipients)
    third_party_name = (
        partner.name if partner else ", ".join(r for r in purpose.recipients if "Nantes Métropole" not in r)
    )
    entry = ledger.event_entry_bytes(event)
    consent_ts = int(event.occurred_at.timestamp())
    policy_url = settings.CONSENT_POLICY_URL
    notice = (
        {
            "notice_id": event.notice_id,
            "version": event.notice_version,
            "sha256": event.notice_sha256,
            "url": policy_url,
        }
        if event.notice_id
        else {"url": policy_url}
    )
    kantara = {
        "version": KANTARA_VERSION,
        "jurisdiction": "FR",
        "consentTimestamp": consent_ts,
        "collectionMethod": event.collection_method,
        "consentReceiptID": str(event.id),
        "publicKey": None,  # filled with the signing key below
        "language": "fr",
        "piiPrincipalId": str(event.subject_id),
        "piiControllers": [_controller()],
        "policyUrl": policy_url,
        "services": [
            {
                "serviceName": partner.name if partner else SERVICE_NAME,
                "purposes": [
                    {
                        "purpose": purpose.title_en,
                        "purposeCategory": [purpose.dpv_purpose],
                        "consentType": _CONSENT_TYPE.get(event.event_type, "EXPLICIT"),
                        "piiCategory": categories,
                        "primaryPurpose": True,
                        "termination": _termination(purpose, event),
                        "thirdPartyDisclosure": third_party,
                        "thirdPartyName": third_party_name or None,
                    }
                ],
            }
        ],
        "sensitive": bool(purpose.special_categories),
        "spiCat": list(purpose.special_categories),
    }
    iso = {
        "header": {
            "schema_version": ISO_27560_SCHEMA,
            "record_id": str(event.id),
            "pii_principal_id": str(event.subject_id),
            "controller": settings.CONSENT_CONTROLLER["name"],
        },
        "processing": {
            "purposes": [
                {
                    "purpose_id": purpose.code,
                    "purpose": purpose.title_en,
                    "purpose_category": purpose.dpv_purpose,
                    "pii_categories": purpose.data_categories,
                }
            ],
            "privacy_notice": notice,
            "storage_locations": ["EU/FR — Nantes Métropole"],
            "retention_period": f"P{purpose.retention_days}D"
            if purpose.retention_days
            else "set by the recipient",
            "recipient_third_parties": [partner.client_id] if partner else list(purpose.recipients),
            "withdrawal_method": "Account page 'Mes consentements', consent widget, or the DPO",
            "lawful_basis": {"gdpr": purpose.gdpr_article, "dpv": purpose.dpv_legal_basis},
        },
        "parties": [
            {"role": "controller", "name": settings.CONSENT_CONTROLLER["name"]},
            {"role": "pii_principal", "id": str(event.subject_id)},
            *([{"role": "recipient", "id": partner.client_id, "name": partner.name}] if partner else []),
        ],
        "event": [
            {
                "event_time": ledger.format_time(event.occurred_at),
                "validity_duration": _iso_duration(event.occurred_at, event.valid_until),
                "entity_id": _entity(event),
                "event_type": event.event_type,
                "event_state": DPV_CONSENT_STATUS[EventType(event.event_type)],
                "grants_processing": event.event_type in GRANTING_EVENTS,
            }
        ],
    }
    return {
        "iss": settings.ISSUER,
        "iat": int(timezone.now().timestamp()),
        "jti": str(event.id),
        "kantara": kantara,
        "iso27560": iso,
        "ledger": {
            "log_id": ledger.log_id(),
            "leaf_index": event.seq,
            "entry": entry.decode("utf-8"),
            "leaf_hash": bytes(event.leaf_hash).hex(),
        },
    }


def receipt_for_event(event: LedgerEvent) -> str:
    """The signed receipt (JWS compact) of a ledger event."""

    claims = receipt_claims(event)
    key = active_signing_key("ES256")
    public = key.jwk.export_public(as_dict=True)
    public.update({"kid": key.kid, "alg": "ES256", "use": "sig"})
    claims["kantara"]["publicKey"] = public
    token, _ = ledger.sign_compact(claims, typ=RECEIPT_TYPE)
    return token


def receipt_verify(token: str) -> dict[str, Any]:
    """Verify a receipt's signature (published keys) and its leaf hash; return its payload."""
    try:
        payload, _kid = ledger.verify_compact(token, typ=RECEIPT_TYPE)
    except ledger.SignatureInvalid as exc:
        raise ReceiptInvalid(str(exc), exc.code) from exc
    try:
        entry = payload["ledger"]["entry"].encode("utf-8")
        leaf = bytes.fromhex(payload["ledger"]["leaf_hash"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ReceiptInvalid("receipt lacks its ledger entry", "entry") from exc
    if merkle.leaf_hash(entry) != leaf:
        raise ReceiptInvalid("the entry does not hash to the receipt's leaf hash", "entry")
    return payload
