"""The consent app's own data-rights provider (registered in ConsentConfig.ready).

Export section "consent": `pseudonyms` [{id, kind}], `current_choices` [{purpose, status,
valid_until, renewal_required}] and `ledger_events` [{receipt_id, leaf_index, pseudonym,
type, purpose, notice_version, collection_method, actor, partner_client_id, at,
valid_until, details (decrypted; null once the key is destroyed)}] and `unreadable_events`
[{leaf_index, receipt_id, reason}]: the resident's events whose stored row is malformed or
altered in the database, or whose details no longer decrypt (issue 9, finding 10's class).
They are named rather than exported (nothing read from an altered row is handed out as the
resident's record) and the rest of the export, this section's sound events included, goes on.
`rights_requests` [{id, kind, state, requested_at, started_at, completed_at, deadline,
expires_at, downloaded_at}]: the resident's data-rights requests (never the download
link's hash nor the archive).

Erasure: consent.services.subject_erase, crypto-shredding: the per-subject data keys of
the account and of the browsers attached to it are destroyed and the link between the
account and its pseudonyms is cut. The ledger events stay under their pseudonym (proof of
consent, GDPR Art. 7(1) and 17(3)(e)): leaf hashes, inclusion proofs, receipts and signed
tree heads keep verifying; their encrypted details can no longer be read by anyone.
The resident's rights requests lose their archive and link (deleted); the rows stay, detached
from the account when it is deleted (user SET_NULL), as the record that the request was
answered (GDPR Art. 5(2), 12(3)): kind, state and dates only.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection

from consent import crypto, ledger
from consent.models import ConsentState, LedgerEvent, RightsPartnerData, RightsRequest, Subject
from consent.rights import ORDER_CONSENT, ErasureReport
from consent.services import subject_erase

NAME = "consent"
ORDER = ORDER_CONSENT
MODELS = (
    "consent.Subject",
    "consent.ConsentState",
    "consent.LedgerEvent",
    "consent.RightsRequest",
    "consent.RightsPartnerData",  # partners' data for an export: in the archive, deleted here
)
ALTERED = "this event's record was altered or damaged in the database: it is not exported"
UNDECRYPTABLE = "this event's details no longer decrypt (altered in the database): they are not exported"

log = logging.getLogger(__name__)


def export(user: Any) -> dict[str, Any]:
    """The resident's pseudonyms, current choices and every ledger event, details decrypted."""
    subjects = list(Subject.objects.filter(user=user).order_by("created_at"))
    keys: dict[Any, bytes | None] = {}
    for subject in subjects:
        try:
            keys[subject.id] = crypto.unwrap_key(subject.wrapped_key, subject.id)
        except crypto.KeyDestroyed:
            keys[subject.id] = None
    selected = LedgerEvent.objects.filter(subject__in=subjects)
    # Rows are checked raw before the ORM reads them (it fails on a malformed value).
    sql, params = selected.values("pk").query.sql_with_params() if subjects else ("", [])
    problems = (
        [p for p in ledger.rows_check(sql, params, max_problems=1000) if p.kind != "missing"] if sql else []
    )
    unreadable = [
        {"leaf_index": p.seq, "receipt_id": p.event_id or None, "reason": ALTERED} for p in problems
    ]
    bad_seqs = {p.seq for p in problems if p.seq is not None}
    if any(p.seq is None for p in problems):
        # A malformed sequence number: keep only the rows whose number is an integer.
        selected = selected.filter(pk__in=_integer_seq_ids(sql, params))
    events = []
    for event in selected.exclude(seq__in=bad_seqs).order_by("seq"):
        details = None
        data_key = keys.get(event.subject_id)
        if event.details_ciphertext and data_key:
            try:
                details = crypto.decrypt_details(
                    data_key, event.details_ciphertext, event_id=event.id, subject_id=event.subject_id
                )
            except crypto.DecryptionFailed:
                unreadable.append(
                    {"leaf_index": event.seq, "receipt_id": str(event.id), "reason": UNDECRYPTABLE}
                )
                continue
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
    if unreadable:
        log.warning(
            "resident export: ledger events at positions %s unreadable (altered)",
            sorted(row["leaf_index"] for row in unreadable if row["leaf_index"] is not None),
        )
    unreadable.sort(key=lambda row: (row["leaf_index"] is None, row["leaf_index"] or 0))
    return {
        "pseudonyms": [{"id": str(s.id), "kind": s.kind} for s in subjects],
        "current_choices": states,
        "ledger_events": events,
        "unreadable_events": unreadable,
        "rights_requests": _rights_requests(user),
    }


def _when(value: Any) -> str | None:
    return value.isoformat() if value else None


def _rights_requests(user: Any) -> list[dict[str, Any]]:
    rows = RightsRequest.objects.filter(user=user).order_by("requested_at").defer("archive")
    return [
        {
            "id": str(row.id),
            "kind": row.kind,
            "state": row.state,
            "requested_at": _when(row.requested_at),
            "started_at": _when(row.started_at),
            "completed_at": _when(row.completed_at),
            "deadline": _when(row.deadline),
            "expires_at": _when(row.expires_at),
            "downloaded_at": _when(row.downloaded_at),
        }
        for row in rows
    ]


def _integer_seq_ids(sql: str, params: Any) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, seq FROM consent_ledgerevent WHERE id IN ({sql})", list(params))  # noqa: S608
        return [event_id for event_id, seq in cursor.fetchall() if type(seq) is int]


def erase(user: Any) -> ErasureReport:
    report = subject_erase(user=user)
    forgotten = RightsRequest.objects.filter(user=user).update(archive=None, token_hash="")
    partner_data, _by_model = RightsPartnerData.objects.filter(request__user=user).delete()
    report.details["rights_requests"] = forgotten
    report.details["partner_data"] = partner_data
    report.kept.append("rights requests: kind, state and dates (the record that they were answered)")
    return report
