"""Erasure of a resident's account (GDPR Art. 17 and 19): the request, its grace period, the
worker's run, the partners' seam and the inactive accounts.

The flow (docs/architecture.md, "Erasure"):

1. `erasure_request` (the resident on /compte/supprimer/ after a fresh sign-in, or the
   inactive-accounts command): one transaction writes the `RightsRequest` (kind "erasure",
   state "waiting", `not_before` = now + ERASURE_GRACE_DAYS), its outbox message (kind
   `rights.erasure`, due at `not_before`), the audit row and the email with the cancel link
   (single-use) and the status link. Secrets of both links are stored as keyed hashes only.
   The account keeps working meanwhile; a second request while one waits is refused.
2. `erasure_cancel` (the button on the erasure page, or the email's cancel link): state
   "cancelled"; the outbox message, when it comes, finds nothing to do.
3. `erasure_run` (the worker, kind `rights.erasure`): in ONE transaction,
   `consent.rights.rights_erase` (every provider: sessions ended and back-channel logouts
   queued, tokens and factors gone, consent subject key destroyed, the account row last),
   then one `rights.partner_erasure` outbox message per partner client that received data
   about the resident (the seam for partner connectors), the request's progress and state
   "done". Any error rolls all of it back and marks the request "failed".
4. `erasure_now` (an operator deleting the account in the admin): the same run, at once,
   without a grace period, audited with the operator.

`progress` holds `{"steps": [{"name": provider, "state", "erased", "kept"}, ...] (in the
order they ran), "partners": {client_id: {"state", "at"}}}`: names and counts, never
personal data. The status page (token in the email, no sign-in: the account is gone) reads it.

The outbox lives above consent (docs/architecture.md, "Layers"): the connectors app
registers the queue (`register_erasure_queue`) and the handlers (connectors/rights_erasure.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from oauth2_provider.models import get_application_model

from common.crypto import generate_secret, keyed_hash, keyed_hash_matches
from consent.models import (
    LedgerEvent,
    RightsRequest,
    RightsRequestKind,
    RightsRequestOrigin,
    RightsRequestState,
    Subject,
)
from consent.rights import rights_erase
from identity.audit import audit_log
from identity.emails import absolute_url, send_email
from identity.models import AuditEvent, SessionClient, User

KIND_ERASURE = "rights.erasure"
KIND_PARTNER_ERASURE = "rights.partner_erasure"
PARTNER_REQUESTED = "requested"
PARTNER_NO_CONNECTOR = "no_connector"
STEP_DONE = "done"
EVENT_INACTIVE_WARNED = "account.inactive_warned"

# (*, kind, idempotency_key, payload, partner, not_before) -> Any, in the caller's transaction.
ErasureQueue = Callable[..., Any]
_queue: ErasureQueue | None = None


class ErasureError(ValueError):
    """The request cannot be made (one already waits, the account is staff…)."""


class ErasureFailed(RuntimeError):
    """The erasure's transaction failed: nothing was erased; the request is marked "failed"."""


# (user) -> client_ids of partners holding data about the resident that consent cannot see
# (connectors: the partners the resident linked an account at).
PartnerSource = Callable[[User], list[str]]
_partner_sources: dict[str, PartnerSource] = {}


def register_partner_source(name: str, source: PartnerSource) -> None:
    """Called from an upper app's ready(): more partners to send the erasure request to."""
    _partner_sources[name] = source


# (user) -> client_id -> opaque details the partner's erasure message carries (connectors: the
# sealed card numbers of the links about to be erased, so the partner can be asked by card).
# Read before the providers erase; consent never interprets them.
PartnerDetails = Callable[[User], dict[str, dict[str, Any]]]
_partner_details: dict[str, PartnerDetails] = {}


def register_partner_details(name: str, source: PartnerDetails) -> None:
    """Called from an upper app's ready(): what each partner's erasure message must carry."""
    _partner_details[name] = source


def partner_details(user: User) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for source in _partner_details.values():
        for client_id, details in source(user).items():
            merged.setdefault(client_id, {}).update(details)
    return merged


def register_erasure_queue(queue: ErasureQueue) -> None:
    """Called from the connectors app's ready(): how an erasure reaches the worker."""
    global _queue
    _queue = queue


def _enqueue(
    *, kind: str, key: str, payload: dict[str, Any], partner: str = "", not_before: datetime | None = None
) -> None:
    if _queue is None:
        raise ImproperlyConfigured("no erasure queue registered: is the connectors app installed?")
    _queue(kind=kind, idempotency_key=key, payload=payload, partner=partner, not_before=not_before)


# --- reads -------------------------------------------------------------------------------------


def erasure_pending(*, user: User) -> RightsRequest | None:
    """The resident's erasure request still in its grace period (or running), if any."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return (
        RightsRequest.objects.filter(
            user=user,
            kind=RightsRequestKind.ERASURE,
            state__in=(RightsRequestState.WAITING, RightsRequestState.RUNNING),
        )
        .order_by("-requested_at")
        .first()
    )


def _by_token(token: str, field: str) -> RightsRequest | None:
    if not token or len(token) > 200:
        return None
    request = RightsRequest.objects.filter(
        kind=RightsRequestKind.ERASURE, **{field: keyed_hash(token)}
    ).first()
    if request is None or not keyed_hash_matches(token, getattr(request, field)):
        return None
    return request


def erasure_by_status_token(token: str) -> RightsRequest | None:
    """The request whose status link carries `token` (the status page: no sign-in)."""
    return _by_token(token, "token_hash")


def erasure_by_cancel_token(token: str) -> RightsRequest | None:
    """The request whose (unused) cancel link carries `token`."""
    return _by_token(token, "cancel_token_hash")


@dataclass(frozen=True)
class ErasureStep:
    name: str
    state: str
    erased: list[str]
    kept: list[str]


@dataclass(frozen=True)
class PartnerDelivery:
    """Where the outbox message carrying a partner's erasure request stands (connectors'
    reader): `status` pending, delivered or dead; `error_type` the type of its last error
    (never the detail)."""

    status: str
    attempts: int
    error_type: str
    created_at: datetime
    delivered_at: datetime | None


# (request ids) -> {(request id, client_id): PartnerDelivery}: one query, the connectors app's.
DeliveryReader = Callable[[list[str]], dict[tuple[str, str], PartnerDelivery]]
_delivery_reader: DeliveryReader | None = None


def register_delivery_reader(reader: DeliveryReader) -> None:
    """Called from the connectors app's ready(): how consent reads where each partner's
    erasure request stands in the outbox (consent cannot import the outbox)."""
    global _delivery_reader
    _delivery_reader = reader


# A partner's state, in the order an operator or the DPO cares about it.
PARTNER_QUEUED = "queued"  # waiting in the queue, not tried yet
PARTNER_FAILING = "failing"  # tried, failed, will be retried
PARTNER_DEAD = "dead_letter"  # given up: an operator must act (replay)
PARTNER_DELIVERED = "delivered"  # delivered, no answer recorded
# Answers: erasure (erased, refused, not_supported, no_connector) and export (answered: its data
# arrived; failed: garbage, or unreachable after every attempt).
PARTNER_ANSWERS = ("erased", "refused", "not_supported", PARTNER_NO_CONNECTOR, "answered", "failed")


@dataclass(frozen=True)
class PartnerStatus:
    """One partner of an erasure: `state` is its answer (erased, refused, not_supported,
    no_connector) once recorded, else where its message stands (queued, failing,
    dead_letter, delivered; `requested` when the outbox row is not found). `at`: the
    answer's date, else the message's."""

    client_id: str
    state: str
    name: str = ""
    at: datetime | None = None
    attempts: int = 0
    error_type: str = ""
    detail: str = ""  # the partner's (or the operator's) words: English, no personal data
    # Asked by a channel that answers later (the email connector): the partner was asked on
    # `at`, an operator records its answer.
    asked_later: bool = False

    @property
    def answered(self) -> bool:
        return self.state in PARTNER_ANSWERS

    @property
    def failing(self) -> bool:
        return self.state in (PARTNER_FAILING, PARTNER_DEAD)


def erasure_steps(request: RightsRequest) -> list[ErasureStep]:
    steps = (request.progress or {}).get("steps", [])
    return [
        ErasureStep(
            name=str(step.get("name", "")),
            state=str(step.get("state", "")),
            erased=step.get("erased", []),
            kept=step.get("kept", []),
        )
        for step in steps
    ]


def _partner_status(
    answer: Any, delivery: PartnerDelivery | None, client_id: str, name: str
) -> PartnerStatus:
    answer = answer if isinstance(answer, dict) else {}
    state = str(answer.get("state", "")) or PARTNER_REQUESTED
    at = parse_datetime(str(answer.get("at") or ""))
    detail = str(answer.get("detail") or "")
    # "requested" with a date: recorded by the handler (asked by email), not a placeholder.
    asked_later = state == PARTNER_REQUESTED and at is not None
    if state in PARTNER_ANSWERS or delivery is None or asked_later:
        return PartnerStatus(
            client_id=client_id, state=state, name=name, at=at, detail=detail, asked_later=asked_later
        )
    if delivery.status == "dead":
        state = PARTNER_DEAD
    elif delivery.status == "delivered":
        state = PARTNER_DELIVERED
    else:
        state = PARTNER_FAILING if delivery.attempts else PARTNER_QUEUED
    return PartnerStatus(
        client_id=client_id,
        state=state,
        name=name,
        at=delivery.delivered_at or delivery.created_at,
        attempts=delivery.attempts,
        error_type=delivery.error_type,
    )


def partners_states(requests: list[RightsRequest]) -> dict[Any, list[PartnerStatus]]:
    """Each request's partners (progress["partners"]) with their answer or, until one is
    recorded, where their message stands in the outbox. Two queries whatever the number of
    requests: the outbox (connectors' reader) and the partners' names."""
    answers = {request.pk: (request.progress or {}).get("partners", {}) or {} for request in requests}
    ids = [str(pk) for pk, partners in answers.items() if partners]
    if not ids:
        return {request.pk: [] for request in requests}
    deliveries = _delivery_reader(ids) if _delivery_reader is not None else {}
    client_ids = {client_id for partners in answers.values() for client_id in partners}
    names = dict(
        get_application_model().objects.filter(client_id__in=client_ids).values_list("client_id", "name")
    )
    return {
        pk: [
            _partner_status(answer, deliveries.get((str(pk), client_id)), client_id, names.get(client_id, ""))
            for client_id, answer in sorted(partners.items())
        ]
        for pk, partners in answers.items()
    }


def erasure_partners(request: RightsRequest) -> list[PartnerStatus]:
    return partners_states([request])[request.pk]


# --- asking and cancelling ---------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureLinks:
    status_url: str
    cancel_url: str


def _links(request: RightsRequest) -> tuple[ErasureLinks, str, str]:
    status_token, cancel_token = generate_secret(), generate_secret()
    request.token_hash = keyed_hash(status_token)
    request.cancel_token_hash = keyed_hash(cancel_token)
    links = ErasureLinks(
        status_url=absolute_url(reverse("consent:erasure-status", args=[status_token])),
        cancel_url=absolute_url(reverse("consent:erasure-cancel-link", args=[cancel_token])),
    )
    return links, status_token, cancel_token


def erasure_request(
    *, user: User, ip: str = "", origin: str = RightsRequestOrigin.RESIDENT
) -> tuple[RightsRequest, ErasureLinks]:
    """Record the resident's erasure request, due after the grace period: the row, its outbox
    message (scheduled at `not_before`), the audit row and the email, in one transaction.
    ErasureError if one is already waiting."""
    now = timezone.now()
    with transaction.atomic():
        locked = User.objects.select_for_update().filter(pk=user.pk).first()
        if locked is None:
            raise ErasureError("no such account")
        if erasure_pending(user=locked) is not None:
            raise ErasureError("an erasure request is already waiting")
        request = RightsRequest(
            user=locked,
            kind=RightsRequestKind.ERASURE,
            origin=origin,
            requested_at=now,
            not_before=now + timedelta(days=settings.ERASURE_GRACE_DAYS),
            language=locked.preferred_language or settings.LANGUAGE_CODE,
            progress={"steps": [], "partners": {}},
        )
        links, _status, _cancel = _links(request)
        request.save()
        _enqueue(
            kind=KIND_ERASURE,
            key=f"{KIND_ERASURE}:{request.pk}",
            payload={"request_id": str(request.pk)},
            not_before=request.not_before,
        )
        audit_log(
            event="rights.erasure_requested",
            acting_user=locked if origin == RightsRequestOrigin.RESIDENT else None,
            subject_user=locked,
            ip=ip,
            data={"request": str(request.pk), "origin": origin, "not_before": request.not_before.isoformat()},
        )
        send_email(
            to=locked.email,
            template="erasure_requested",
            context={
                "given_name": locked.given_name,
                "not_before": request.not_before,
                "cancel_url": links.cancel_url,
                "status_url": links.status_url,
                "inactive": origin == RightsRequestOrigin.INACTIVITY,
            },
            language=request.language,
        )
    return request, links


def erasure_cancel(
    *, request: RightsRequest, acting_user: User | None = None, ip: str = "", via: str = ""
) -> bool:
    """Cancel a waiting erasure request (its cancel link becomes unusable). False if it was
    no longer waiting (already cancelled, running or done)."""
    with transaction.atomic():
        locked = RightsRequest.objects.select_for_update().filter(pk=request.pk).first()
        if locked is None or locked.state != RightsRequestState.WAITING:
            return False
        locked.state = RightsRequestState.CANCELLED
        locked.completed_at = timezone.now()
        locked.cancel_token_hash = ""
        locked.save(update_fields=["state", "completed_at", "cancel_token_hash"])
        audit_log(
            event="rights.erasure_cancelled",
            acting_user=acting_user,
            subject_user=locked.user,
            ip=ip,
            data={"request": str(locked.pk), "via": via},
        )
    request.refresh_from_db()
    return True


# --- the run -----------------------------------------------------------------------------------


def partners_of(user: User) -> list[str]:
    """client_ids of the partners that received data about the resident: a session's tokens,
    or a sharing purpose of theirs in the resident's consent ledger, or a registered partner
    source (connectors: the partners the resident linked an account at). The export's fan-out
    (consent.rights_requests) asks the same partners."""
    from_sessions = SessionClient.objects.filter(session__user=user).values_list(
        "client__client_id", flat=True
    )
    subject_ids = Subject.objects.filter(user=user).values_list("pk", flat=True)
    from_consents = (
        LedgerEvent.objects.filter(subject_id__in=subject_ids, purpose__client__isnull=False)
        .values_list("purpose__client__client_id", flat=True)
        .distinct()
    )
    from_sources = [client_id for source in _partner_sources.values() for client_id in source(user)]
    return sorted(
        {str(client_id) for client_id in [*from_sessions, *from_consents, *from_sources] if client_id}
    )


def _erase(request: RightsRequest, user: User) -> None:
    """Inside the caller's transaction: every provider, the partners' messages, the progress."""
    partners = partners_of(user)
    details = partner_details(user)
    report = rights_erase(user)
    # A list: the order the providers ran in (a JSON object's keys lose it in PostgreSQL's jsonb).
    steps = [
        {"name": item.provider, "state": STEP_DONE, "erased": list(item.erased), "kept": list(item.kept)}
        for item in report.reports
    ]
    for client_id in partners:
        _enqueue(
            kind=KIND_PARTNER_ERASURE,
            key=f"{KIND_PARTNER_ERASURE}:{request.pk}:{client_id}",
            payload={
                "request_id": str(request.pk),
                "client_id": client_id,
                **({"details": details[client_id]} if client_id in details else {}),
            },
            partner=client_id,
        )
    request.progress = {"steps": steps, "partners": {key: {"state": PARTNER_REQUESTED} for key in partners}}
    request.state = RightsRequestState.DONE
    request.completed_at = timezone.now()
    request.cancel_token_hash = ""
    request.user = None
    # token_hash too: the consent provider forgets the links of the resident's requests, but
    # this one's status link must keep working (the account is gone).
    request.save(
        update_fields=[
            "progress",
            "state",
            "started_at",
            "completed_at",
            "token_hash",
            "cancel_token_hash",
            "user",
        ]
    )
    audit_log(
        event="rights.erasure_done",
        data={"request": str(request.pk), "origin": request.origin, "partners": len(partners)},
    )


def _failed(request_id: Any, error: Exception) -> None:
    with transaction.atomic():
        RightsRequest.objects.filter(pk=request_id).update(
            state=RightsRequestState.FAILED, completed_at=timezone.now()
        )
        audit_log(
            event="rights.erasure_failed", data={"request": str(request_id), "error": type(error).__name__}
        )


def erasure_not_yet_due(*, request_id: Any) -> datetime | None:
    """When a waiting request's grace period ends, if it has not ended yet (else None): the
    handler puts the message back for then (a replay or a clock ahead must not lose it)."""
    request = (
        RightsRequest.objects.filter(
            pk=request_id, kind=RightsRequestKind.ERASURE, state=RightsRequestState.WAITING
        )
        .only("not_before")
        .first()
    )
    if request is None or request.not_before <= timezone.now():
        return None
    return request.not_before


def erasure_run(*, request_id: Any) -> bool:
    """The worker's part (kind `rights.erasure`): erase now if the request still waits (or
    failed before: a replay) and its grace period is over. False when there was nothing to do
    (cancelled, done, not yet due). ErasureFailed (after marking the request "failed") if the
    erasure's transaction failed."""
    try:
        with transaction.atomic():
            request = RightsRequest.objects.select_for_update().filter(pk=request_id).first()
            if (
                request is None
                or request.kind != RightsRequestKind.ERASURE
                # failed: an operator replays the dead-lettered message once the cause is fixed
                or request.state not in (RightsRequestState.WAITING, RightsRequestState.FAILED)
                or request.not_before > timezone.now()
            ):
                return False
            user = (
                User.objects.select_for_update().filter(pk=request.user_id).first()
                if request.user_id is not None
                else None
            )
            if user is None:
                raise ErasureError("the account no longer exists")
            request.started_at = timezone.now()
            _erase(request, user)
    except Exception as exc:
        _failed(request_id, exc)
        raise ErasureFailed(type(exc).__name__) from exc
    return True


def erasure_now(*, user: User, operator: User | None, ip: str = "") -> RightsRequest:
    """An operator deletes the account (the admin): the same erasure at once, no grace period,
    one transaction, audited with the operator. A waiting request of the resident is closed by
    this one (its state: cancelled)."""
    with transaction.atomic():
        locked = User.objects.select_for_update().filter(pk=user.pk).first()
        if locked is None:
            raise ErasureError("no such account")
        waiting = erasure_pending(user=locked)
        if waiting is not None:
            RightsRequest.objects.filter(pk=waiting.pk).update(
                state=RightsRequestState.CANCELLED, cancel_token_hash="", completed_at=timezone.now()
            )
        now = timezone.now()
        request = RightsRequest.objects.create(
            user=locked,
            kind=RightsRequestKind.ERASURE,
            origin=RightsRequestOrigin.OPERATOR,
            requested_at=now,
            not_before=now,
            started_at=now,
            language=locked.preferred_language or settings.LANGUAGE_CODE,
        )
        audit_log(
            event="rights.erasure_by_operator",
            acting_user=operator,
            subject_user=locked,
            ip=ip,
            data={"request": str(request.pk)},
        )
        _erase(request, locked)
    return request


def partner_erasure_record(*, request_id: Any, client_id: str, state: str, detail: str = "") -> None:
    """A partner's answer to an erasure request (`no_connector`, or the connectors' answers:
    `erased`, `refused`, `not_supported`, written by the handler of `rights.partner_erasure`),
    kept in the request's progress with the partner's `detail` (English, no personal data)."""
    with transaction.atomic():
        request = RightsRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None:
            return
        progress = dict(request.progress or {})
        partners = dict(progress.get("partners", {}))
        partners[client_id] = {
            "state": state,
            "at": timezone.now().isoformat(),
            **({"detail": detail[:300]} if detail else {}),
        }
        progress["partners"] = partners
        request.progress = progress
        request.save(update_fields=["progress"])


# --- inactive accounts -------------------------------------------------------------------------


@dataclass
class InactiveOutcome:
    warned: list[str]
    requested: list[str]


def _residents() -> QuerySet[User]:
    # Staff accounts are managed by the operators, never erased for inactivity.
    return User.objects.filter(is_staff=False, is_superuser=False, groups__isnull=True)


def _inactive_since(cutoff: datetime) -> QuerySet[User]:
    return _residents().filter(Q(last_login__lt=cutoff) | Q(last_login__isnull=True, created_at__lt=cutoff))


def _warned_since_last_sign_in(user: User) -> AuditEvent | None:
    since = user.last_login or user.created_at
    return (
        AuditEvent.objects.filter(event=EVENT_INACTIVE_WARNED, subject_user_id=user.pk, created_at__gte=since)
        .order_by("created_at")
        .first()
    )


def inactive_accounts_process(*, dry_run: bool = False, now: datetime | None = None) -> InactiveOutcome:
    """For cron (`manage.py erase_inactive_accounts`): warn the accounts that will reach
    ERASURE_INACTIVE_AFTER_DAYS without a sign-in within ERASURE_INACTIVE_WARNING_DAYS, then
    ask the erasure of those that reached it, were warned at least ERASURE_INACTIVE_WARNING_DAYS
    ago and still did not sign in. Idempotent: one warning per period of inactivity, one
    request at a time. `dry_run`: says what it would do, writes nothing."""
    now = now or timezone.now()
    after = timedelta(days=settings.ERASURE_INACTIVE_AFTER_DAYS)
    warning = timedelta(days=settings.ERASURE_INACTIVE_WARNING_DAYS)
    outcome = InactiveOutcome(warned=[], requested=[])
    for user in _inactive_since(now - after + warning).distinct().order_by("pk"):
        if erasure_pending(user=user) is not None:
            continue
        warned = _warned_since_last_sign_in(user)
        if warned is None:
            outcome.warned.append(str(user.pk))
            if not dry_run:
                _inactive_warn(user, deadline=now + warning)
        elif warned.created_at <= now - warning and (user.last_login or user.created_at) < now - after:
            outcome.requested.append(str(user.pk))
            if not dry_run:
                erasure_request(user=user, origin=RightsRequestOrigin.INACTIVITY)
    return outcome


def _inactive_warn(user: User, *, deadline: datetime) -> None:
    with transaction.atomic():
        audit_log(event=EVENT_INACTIVE_WARNED, subject_user=user, data={"deadline": deadline.isoformat()})
        send_email(
            to=user.email,
            template="erasure_inactive_warning",
            context={
                "given_name": user.given_name,
                "deadline": deadline,
                "login_url": absolute_url(reverse("identity:login")),
            },
            language=user.preferred_language or settings.LANGUAGE_CODE,
        )
