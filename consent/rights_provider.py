"""The consent app's own data-rights provider (registered in ConsentConfig.ready).

Export section "consent": `pseudonyms` [{id, kind}], `current_choices` [{purpose, status,
valid_until, renewal_required}] and `ledger_events` [{receipt_id, leaf_index, pseudonym,
type, purpose, notice_version, collection_method, actor, partner_client_id, at,
valid_until, details (decrypted; null once the key is destroyed)}].

Erasure: consent.services.subject_erase, crypto-shredding: the per-subject data keys of
the account and of the browsers attached to it are destroyed and the link between the
account and its pseudonyms is cut. The ledger events stay under their pseudonym (proof of
consent, GDPR Art. 7(1) and 17(3)(e)): leaf hashes, inclusion proofs, receipts and signed
tree heads keep verifying; their encrypted details can no longer be read by anyone.
"""

from __future__ import annotations

from typing import Any

from consent import crypto
from consent.models import ConsentState, LedgerEvent, Subject
from consent.rights import ORDER_CONSENT, ErasureReport
from consent.services import subject_erase

NAME = "consent"
ORDER = ORDER_CONSENT
MODELS = ("consent.Subject", "consent.ConsentState", "consent.LedgerEvent")


def export(user: Any) -> dict[str, Any]:
    """The resident's pseudonyms, current choices and every ledger event, details decrypted."""
    subjects = list(Subject.objects.filter(user=user).order_by("created_at"))
    keys: dict[Any, bytes | None] = {}
    for subject in subjects:
        try:
            keys[subject.id] = crypto.unwrap_key(subject.wrapped_key, subject.id)
        except crypto.KeyDestroyed:
            keys[subject.id] = None
    events = []
    for event in LedgerEvent.objects.filter(subject__in=subjects).order_by("seq"):
        details = None
        data_key = keys.get(event.subject_id)
        if event.details_ciphertext and data_key:
            details = crypto.decrypt_details(
                data_key, event.details_ciphertext, event_id=event.id, subject_id=event.subject_id
            )
        events.append(
            {
                "receipt_id": str(event.id),
                "leaf_index": event.seq,
                "pseudonym": str(event.subject_id),
                "type": event.event_type,
                "purpose": event.purpose_code,
                "notice_version": event.notice_version,
                "collection_method": event.collection_method,
                "actor": event.actor_type,
                "partner_client_id": event.partner_client_id or None,
                "at": event.occurred_at.isoformat(),
                "valid_until": event.valid_until.isoformat() if event.valid_until else None,
                "details": details,
            }
        )
    states = [
        {
            "purpose": state.purpose.code,
            "status": state.status,
            "valid_until": state.valid_until.isoformat() if state.valid_until else None,
            "renewal_required": state.renewal_required,
        }
        for state in ConsentState.objects.filter(subject__in=subjects).select_related("purpose")
    ]
    return {
        "pseudonyms": [{"id": str(s.id), "kind": s.kind} for s in subjects],
        "current_choices": states,
        "ledger_events": events,
    }


def erase(user: Any) -> ErasureReport:
    return subject_erase(user=user)
