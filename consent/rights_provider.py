"""The consent app's own data-rights provider (registered in ConsentConfig.ready)."""

from __future__ import annotations

from typing import Any

from consent import crypto
from consent.models import ConsentState, LedgerEvent, Subject
from consent.rights import ErasureReport


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
    from consent.services import subject_erase

    return subject_erase(user=user)
