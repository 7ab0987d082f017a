"""Outbox kinds of an account erasure (consent.erasure): the erasure itself, due at the end of
the grace period, and the erasure request to each partner that received data about the
resident.

The partner side: a partner without a connector (connectors.PartnerConnector) holds nothing
we can reach beyond the tokens already revoked and the back-channel logout already sent
(`no_connector`). A partner with connectors gets each connector's `erase`, and its answer is
recorded as it is: `erased` when the partner confirmed, `refused` when it refused (its reason
in the detail), `not_supported` when its protocol cannot be asked (the library's SIP2 has no
erasure message), `requested` when the request went by email (the email connector,
connectors.protocol.AnswersLater: sent through connectors.partner_answers.send_ask, in the
transaction that records the state; an operator records the partner's answer later).

A partner with several connectors (a library with SIP2 and an email connector) gets one
state: `not_supported` answers are dropped when another connector could ask (the email
connector sends what SIP2 cannot), then the weakest stands — refused, requested, erased — so
that an operator or the DPO acts on what is still open; each connector's words are kept in
the detail.

The links themselves were erased here by the connectors' rights provider before this message
was delivered. A connector that asks its partner by card (transport) gets the card number from
the message's `details` (`erasure_details`, registered with consent.erasure: the sealed
references of the links, read before they were erased, bound to each link's id); the details
are dropped from the payload once the partner answered. Each connector's call carries the
idempotency key `<message key>:<kind>`: a message delivered twice asks once.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from django.db import transaction

from connectors import partner_answers, subjects
from connectors.links import connector_for
from connectors.models import OutboxMessage, PartnerConnector, PartnerLink
from connectors.outbox import PermanentDeliveryError, RetryableDeliveryError, register_handler
from connectors.protocol import (
    AnswersLater,
    ConnectorError,
    ErasureState,
    PartnerProtocolError,
    PartnerUnavailable,
)
from connectors.sealing import Unsealable, open_reference
from connectors.services import outbox_enqueue
from consent import erasure

DESTINATION = "worker"
ANSWERED = "answered"  # payload flag: the partner's answer is recorded
# The erasure runs in one transaction; a failure is marked on the request ("failed") and
# looked at by an operator: the message is not retried.
ERASURE_MAX_ATTEMPTS = 1


def enqueue_erasure(
    *,
    kind: str,
    idempotency_key: str,
    payload: dict[str, Any],
    partner: str = "",
    not_before: datetime | None = None,
) -> OutboxMessage:
    """consent.erasure's queue: in the caller's transaction; payloads carry ids only."""
    return outbox_enqueue(
        kind=kind,
        destination=partner or DESTINATION,
        payload=payload,
        idempotency_key=idempotency_key,
        partner=partner,
        max_attempts=ERASURE_MAX_ATTEMPTS if kind == erasure.KIND_ERASURE else 12,
        not_before=not_before,
    )


def _field(message: OutboxMessage, name: str) -> str:
    value = (message.payload or {}).get(name)
    if not isinstance(value, str) or not value:
        raise PermanentDeliveryError(f"no {name} in the payload")
    return value


def deliver_erasure(message: OutboxMessage) -> None:
    """End of the grace period: erase (nothing when the request was cancelled). Delivered
    early (a replay, a clock ahead), a new message is scheduled for the end of the period."""
    request_id = _field(message, "request_id")
    due = erasure.erasure_not_yet_due(request_id=request_id)
    if due is not None:
        with transaction.atomic():
            enqueue_erasure(
                kind=erasure.KIND_ERASURE,
                idempotency_key=f"{erasure.KIND_ERASURE}:{request_id}:{due.isoformat()}",
                payload={"request_id": request_id},
                not_before=due,
            )
        return
    try:
        erasure.erasure_run(request_id=request_id)
    except erasure.ErasureFailed as exc:
        raise PermanentDeliveryError(f"erasure failed: {exc}") from None


def erasure_details(user: Any) -> dict[str, dict[str, Any]]:
    """consent.erasure's partner details: client_id → {"links": [{connector, link, reference}]},
    each reference still sealed (bound to its link's id, as the deprovision message carries it)."""
    details: dict[str, dict[str, Any]] = {}
    for link in PartnerLink.objects.filter(user=user).select_related("connector__client"):
        entry = details.setdefault(link.connector.client.client_id, {"links": []})
        entry["links"].append(
            {
                "connector": str(link.connector_id),
                "link": str(link.pk),
                "reference": base64.b64encode(bytes(link.reference_sealed)).decode(),
            }
        )
    return details


def any_reference(message: OutboxMessage) -> str | None:
    """The card number of the first link the resident had at this partner (any of its
    connectors), for a connector that asks a person (the email connector); None if none."""
    links = ((message.payload or {}).get("details") or {}).get("links") or []
    for item in links:
        if isinstance(item, dict):
            try:
                return open_reference(item.get("link"), base64.b64decode(item.get("reference") or ""))
            except (Unsealable, ValueError):
                continue
    return None


def reference_for(message: OutboxMessage, partner_connector: PartnerConnector) -> str | None:
    links = ((message.payload or {}).get("details") or {}).get("links") or []
    for item in links:
        if isinstance(item, dict) and item.get("connector") == str(partner_connector.pk):
            try:
                return open_reference(item.get("link"), base64.b64decode(item.get("reference") or ""))
            except (Unsealable, ValueError):
                raise PermanentDeliveryError("the sealed reference does not open") from None
    return None


def _connector(partner_connector: PartnerConnector) -> Any:
    try:
        return connector_for(partner_connector)
    except ConnectorError as exc:
        raise PermanentDeliveryError(exc.code) from None


def _connector_answer(
    partner_connector: PartnerConnector, message: OutboxMessage, idempotency_key: str
) -> tuple[str, str]:
    reference = reference_for(message, partner_connector)
    subject = str(((message.payload or {}).get("details") or {}).get("subject") or "")
    try:
        outcome = _connector(partner_connector).erase(
            reference, subject=subject, idempotency_key=idempotency_key
        )
    except (PartnerUnavailable, PartnerProtocolError) as exc:
        # A garbage answer is often a passing state of the partner (a maintenance page, a proxy's
        # error page): retried with backoff, dead-lettered after the message's max_attempts.
        raise RetryableDeliveryError(exc.code) from None
    except ConnectorError as exc:
        raise PermanentDeliveryError(exc.code) from None
    return str(outcome.state), outcome.detail


ERASURE_ORDER = (ErasureState.REFUSED, ErasureState.REQUESTED, ErasureState.ERASED)


def aggregate(states: list[str]) -> str:
    """One state for the partner (module docstring)."""
    asked = [state for state in states if state != ErasureState.NOT_SUPPORTED]
    if not asked:
        return str(ErasureState.NOT_SUPPORTED)
    return str(next((state for state in ERASURE_ORDER if state in asked), asked[0]))


def _ask_later(
    partner_connector: PartnerConnector, connector: AnswersLater, message: OutboxMessage, request_id: str
) -> tuple[str, str]:
    details = (message.payload or {}).get("details") or {}
    try:
        text = partner_answers.send_ask(
            partner_connector=partner_connector,
            connector=connector,
            kind="erasure",
            request_id=request_id,
            subject=str(details.get("subject") or ""),
            reference=any_reference(message),
        )
    except ConnectorError as exc:
        raise PermanentDeliveryError(exc.code) from None
    return str(ErasureState.REQUESTED), text


def deliver_partner_erasure(message: OutboxMessage) -> None:
    """Ask each of the partner's connectors; without one, record that nothing more can be asked.
    A message whose answer was recorded (delivered again after a crash, replayed) asks nothing."""
    request_id = _field(message, "request_id")
    client_id = _field(message, "client_id")
    if (message.payload or {}).get(ANSWERED):
        return
    connectors = list(
        PartnerConnector.objects.filter(client__client_id=client_id).select_related("client").order_by("kind")
    )
    answers: dict[str, tuple[str, str]] = {}
    later: list[tuple[PartnerConnector, AnswersLater]] = []
    for item in connectors:
        connector = _connector(item)
        if isinstance(connector, AnswersLater):
            later.append((item, connector))
        else:
            answers[item.kind] = _connector_answer(item, message, f"{message.idempotency_key}:{item.kind}")
    with transaction.atomic():
        for item, connector in later:
            answers[item.kind] = _ask_later(item, connector, message, request_id)
        state = (
            aggregate([answer for answer, _text in answers.values()])
            if answers
            else erasure.PARTNER_NO_CONNECTOR
        )
        detail = "; ".join(f"{kind}: {text}" for kind, (_answer, text) in sorted(answers.items()))
        erasure.partner_erasure_record(request_id=request_id, client_id=client_id, state=state, detail=detail)
        # The sealed card numbers are no longer needed: dropped with the answer recorded, in one
        # transaction, and the message marked answered so that a redelivery records nothing new.
        payload = {key: value for key, value in (message.payload or {}).items() if key != "details"}
        OutboxMessage.objects.filter(pk=message.pk).update(payload={**payload, ANSWERED: True})


def register_erasure_handlers() -> None:
    register_handler(erasure.KIND_ERASURE, deliver_erasure)
    register_handler(erasure.KIND_PARTNER_ERASURE, deliver_partner_erasure)
    erasure.register_erasure_queue(enqueue_erasure)
    erasure.register_partner_details("connectors.links", erasure_details)
    erasure.register_partner_details("connectors.subjects", subjects.erasure_subjects)
