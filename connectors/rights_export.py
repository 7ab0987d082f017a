"""The export's partner side (consent.rights_requests, step 2): one `rights.partner_export`
message per partner that knows the resident and has a connector, written with the export
request; this handler asks each of the partner's connectors and records the answer.

The payload carries what the connectors need, as the erasure's does: `details` from
consent.erasure.partner_details — the sealed card numbers of the resident's links (bound to
each link's id: connectors.rights_erasure.reference_for opens them) and the partner's
`subject` (connectors.subjects). The details are dropped once the answer is recorded.

Per connector of the partner:
- a connector with an API: `export(reference, subject=...)` → its data, under its kind;
  PartnerUnavailable or an unreadable answer (PartnerProtocolError) → the message is retried
  with the outbox's backoff, and on its last attempt the partner is recorded `failed`; any
  other connector error (a configuration that does not open) → `failed` at once, with its code;
- a connector that answers later (AnswersLater: the email connector): the request is sent
  (connectors.partner_answers.send_ask) → `requested`, until an operator records the answer.

The partner's state is the aggregation: `requested` while any of its connectors waits for an
answer (the data already received is stored meanwhile and joins the archive), else `answered`
when any connector sent data, else `failed`, `refused`, `not_supported` in that order; each
connector's word is kept in the detail ("library: answered; email: requested").
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from connectors import partner_answers
from connectors.links import connector_for
from connectors.models import OutboxMessage, PartnerConnector
from connectors.outbox import PermanentDeliveryError, RetryableDeliveryError, register_handler
from connectors.protocol import (
    AnswersLater,
    ConnectorError,
    ExportState,
    PartnerProtocolError,
    PartnerUnavailable,
)
from connectors.rights_erasure import ANSWERED, any_reference, reference_for
from connectors.services import outbox_enqueue
from consent import rights_requests

PARTNER_EXPORT_MAX_ATTEMPTS = 8  # 5 s doubling, jittered: the last about 10 to 20 minutes after the first
AGGREGATION_ORDER = (
    ExportState.REQUESTED,
    ExportState.ANSWERED,
    ExportState.FAILED,
    ExportState.REFUSED,
    ExportState.NOT_SUPPORTED,
)


def enqueue_partner_export(*, request_id: str, client_id: str, details: dict[str, Any]) -> OutboxMessage:
    """consent.rights_requests' partner queue: in the caller's transaction."""
    return outbox_enqueue(
        kind=rights_requests.KIND_PARTNER_EXPORT,
        destination=client_id,
        payload={"request_id": request_id, "client_id": client_id, "details": details},
        idempotency_key=f"{rights_requests.KIND_PARTNER_EXPORT}:{request_id}:{client_id}",
        partner=client_id,
        max_attempts=PARTNER_EXPORT_MAX_ATTEMPTS,
    )


def _field(message: OutboxMessage, name: str) -> str:
    value = (message.payload or {}).get(name)
    if not isinstance(value, str) or not value:
        raise PermanentDeliveryError(f"no {name} in the payload")
    return value


def _subject(message: OutboxMessage) -> str:
    return str(((message.payload or {}).get("details") or {}).get("subject") or "")


def _automatic_answer(
    partner_connector: PartnerConnector, message: OutboxMessage
) -> tuple[ExportState, Any, str]:
    """(state, data, detail) of a connector with an API. Raises RetryableDeliveryError while the
    partner is unreachable and attempts remain."""
    try:
        reference = reference_for(message, partner_connector)
        data = connector_for(partner_connector).export(reference, subject=_subject(message))
    except PermanentDeliveryError as exc:
        return ExportState.FAILED, None, str(exc)
    except (PartnerUnavailable, PartnerProtocolError) as exc:
        # An unreadable answer is retried like no answer (as erasure requests are): a partner's
        # passing fault must not cost the resident their data; failed after the last attempt.
        if message.attempts + 1 < message.max_attempts:
            raise RetryableDeliveryError(exc.code) from None
        return ExportState.FAILED, None, f"{exc.code} after {message.attempts + 1} attempts"
    except ConnectorError as exc:
        return ExportState.FAILED, None, exc.code
    if not isinstance(data, dict):
        return ExportState.FAILED, None, "partner_protocol_error"
    return ExportState.ANSWERED, data, ""


def aggregate(states: list[ExportState]) -> ExportState:
    return next((state for state in AGGREGATION_ORDER if state in states), ExportState.NOT_SUPPORTED)


def _mark_answered(message: OutboxMessage) -> None:
    """The sealed card numbers are dropped, and a redelivery of the message asks nothing."""
    payload = {key: value for key, value in (message.payload or {}).items() if key != "details"}
    OutboxMessage.objects.filter(pk=message.pk).update(payload={**payload, ANSWERED: True})


def deliver_partner_export(message: OutboxMessage) -> None:
    """Ask each of the partner's connectors (module docstring) and record the answer. A message
    whose answer was recorded (delivered again after a crash, replayed) asks nothing."""
    request_id = _field(message, "request_id")
    client_id = _field(message, "client_id")
    if (message.payload or {}).get(ANSWERED):
        return
    if not rights_requests.export_takes_answers(request_id=request_id):
        _mark_answered(message)  # the export failed or the account was erased: nobody is asked
        return
    connectors = list(
        PartnerConnector.objects.filter(client__client_id=client_id).select_related("client").order_by("kind")
    )
    answers: dict[str, tuple[ExportState, Any, str]] = {}
    later: list[tuple[PartnerConnector, AnswersLater]] = []
    for item in connectors:
        try:
            connector = connector_for(item)
        except ConnectorError as exc:
            answers[item.kind] = (ExportState.FAILED, None, exc.code)
            continue
        if isinstance(connector, AnswersLater):
            later.append((item, connector))
        else:
            answers[item.kind] = _automatic_answer(item, message)
    with transaction.atomic():
        for item, asker in later:
            try:
                text = partner_answers.send_ask(
                    partner_connector=item,
                    connector=asker,
                    kind="export",
                    request_id=request_id,
                    subject=_subject(message),
                    reference=any_reference(message),
                )
                answers[item.kind] = (ExportState.REQUESTED, None, text)
            except ConnectorError as exc:
                answers[item.kind] = (ExportState.FAILED, None, exc.code)
        states = [state for state, _data, _detail in answers.values()]
        rights_requests.partner_export_record(
            request_id=request_id,
            client_id=client_id,
            state=str(aggregate(states)) if answers else str(ExportState.NOT_SUPPORTED),
            data={kind: data for kind, (state, data, _d) in answers.items() if state == ExportState.ANSWERED},
            detail="; ".join(
                f"{kind}: {state}" + (f", {detail}" if detail else "")
                for kind, (state, _data, detail) in sorted(answers.items())
            )
            or "no connector",
        )
        _mark_answered(message)


def register_export_handlers() -> None:
    register_handler(rights_requests.KIND_PARTNER_EXPORT, deliver_partner_export)
    rights_requests.register_partner_queue(enqueue_partner_export)
