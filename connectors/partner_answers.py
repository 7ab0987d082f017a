"""Rights requests to partners that answer later (the email connector, connectors.protocol.
AnswersLater): sending the request, and the operator recording the partner's answer.

- `send_ask` (in the rights handler's transaction: connectors/rights_export.py,
  connectors/rights_erasure.py): the connector's `send_rights_request` (the email, through the
  outbox) and the operators' work item (`PartnerRightsAsk`, due one month after the resident's
  request, GDPR Art. 12(3)). Asking twice for one request and connector writes one item.
- `record_answer` (the admin, an operator who received the partner's reply): the answer goes
  where the automatic answers go — the export's partner state and data
  (consent.rights_requests.partner_export_record: the data encrypted, a new version of the
  archive emailed to the resident) or the erasure's partner state
  (consent.erasure.partner_erasure_record) — with the work item closed and an audit row
  (ids and states only, never the data or the refusal's words).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from connectors.models import PartnerConnector, PartnerRightsAsk
from connectors.protocol import AnswersLater, RightsAsk
from consent import erasure, rights_requests
from consent.models import RightsRequest
from identity.audit import audit_log
from identity.models import User


class AnswerError(ValueError):
    """The answer cannot be recorded (already recorded, not an answer to this kind)."""


def send_ask(
    *,
    partner_connector: PartnerConnector,
    connector: AnswersLater,
    kind: str,
    request_id: str,
    subject: str,
    reference: str | None,
) -> str:
    """Within the caller's transaction. Returns the connector's detail (English, no personal data)."""
    request = RightsRequest.objects.get(pk=request_id)
    existing = PartnerRightsAsk.objects.filter(connector=partner_connector, request=request).first()
    if existing is not None:
        return "already asked"
    detail = connector.send_rights_request(
        RightsAsk(
            kind=kind,
            request_id=str(request.pk),
            requested_at=request.requested_at,
            due_on=timezone.localdate(request.deadline),
            subject=subject,
            reference=reference,
        )
    )
    PartnerRightsAsk.objects.create(
        connector=partner_connector, request=request, kind=kind, due_at=request.deadline
    )
    return detail


EXPORT_ANSWERS = (
    PartnerRightsAsk.State.ANSWERED,
    PartnerRightsAsk.State.NOTHING_HELD,
    PartnerRightsAsk.State.REFUSED,
)
ERASURE_ANSWERS = (PartnerRightsAsk.State.ERASED, PartnerRightsAsk.State.REFUSED)


def _detail(state: str, reason: str) -> str:
    texts = {
        PartnerRightsAsk.State.ANSWERED: "email: the partner sent its data (recorded by an operator)",
        PartnerRightsAsk.State.NOTHING_HELD: "email: the partner holds no data about the resident",
        PartnerRightsAsk.State.ERASED: "email: the partner confirmed the erasure (recorded by an operator)",
        PartnerRightsAsk.State.REFUSED: "email: the partner refused",
    }
    text = texts[PartnerRightsAsk.State(state)]
    return f"{text}: {reason}" if reason else text


def record_answer(
    *,
    ask: PartnerRightsAsk,
    operator: User | None,
    state: str,
    reason: str = "",
    data: Any = None,
    ip: str = "",
) -> None:
    """Record the partner's answer to an emailed request (module docstring). AnswerError when
    it was recorded already or does not answer this kind of request."""
    allowed = EXPORT_ANSWERS if ask.kind == PartnerRightsAsk.Kind.EXPORT else ERASURE_ANSWERS
    if state not in allowed:
        raise AnswerError(f"{state!r} does not answer an {ask.kind} request")
    reason = " ".join(reason.split())[:200]
    with transaction.atomic():
        locked = (
            PartnerRightsAsk.objects.select_for_update().select_related("connector__client").get(pk=ask.pk)
        )
        if locked.state != PartnerRightsAsk.State.REQUESTED:
            raise AnswerError("this request's answer is already recorded")
        client_id = locked.connector.client.client_id
        detail = _detail(state, reason if state == PartnerRightsAsk.State.REFUSED else "")
        if locked.kind == PartnerRightsAsk.Kind.EXPORT:
            rights_requests.partner_export_record(
                request_id=locked.request_id,
                client_id=client_id,
                state=rights_requests.PARTNER_REFUSED
                if state == PartnerRightsAsk.State.REFUSED
                else rights_requests.PARTNER_ANSWERED,
                data={locked.connector.kind: data} if state == PartnerRightsAsk.State.ANSWERED else None,
                detail=detail,
            )
        else:
            erasure.partner_erasure_record(
                request_id=locked.request_id, client_id=client_id, state=state, detail=detail
            )
        locked.state = state
        locked.reason = reason if state == PartnerRightsAsk.State.REFUSED else ""
        locked.answered_at = timezone.now()
        locked.answered_by = operator
        locked.save(update_fields=["state", "reason", "answered_at", "answered_by"])
        audit_log(
            event="connectors.partner_answer_recorded",
            acting_user=operator,
            client_id=client_id,
            ip=ip,
            data={
                "ask": str(locked.pk),
                "request": str(locked.request_id),
                "kind": locked.kind,
                "state": state,
            },
        )
    ask.refresh_from_db()
