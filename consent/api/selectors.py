"""Reads for the cookie-consent API and the resident's receipts (not in consent.selectors).

Kept here, beside their only callers, so the ledger's public selectors stay small; they
read the ledger's models like consent.selectors does and never write.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.db.models import Q, QuerySet
from django.utils import timezone
from oauth2_provider.models import AbstractApplication, get_application_model

from consent.models import (
    GRANTING_EVENTS,
    OBJECTING_EVENTS,
    ConsentState,
    LedgerEvent,
    PrivacyNotice,
    Purpose,
    SubjectKind,
)
from consent.selectors import events_problems, purposes_catalogue
from consent.services import browser_id_hash
from identity.models import User

logger = logging.getLogger(__name__)

# The purposes a partner site's cookie banner asks about: the cookie-based personalisation
# (consent required) and the exempt audience measurement (listed, objection possible).
# The catalogue has no "cookie" flag yet, so they are named here.
COOKIE_PURPOSE_CODES = ("personalisation-browsing", "audience-measurement")


def client_by_client_id(client_id: Any) -> AbstractApplication | None:
    if not isinstance(client_id, str) or not client_id or len(client_id) > 100 or "\x00" in client_id:
        return None  # a NUL character: PostgreSQL refuses it in text, and no client has one
    # The partner client model (identity.Client) by its setting: consent never imports identity.oidc.
    return get_application_model().objects.filter(client_id=client_id).first()


def cookie_purposes() -> list[Purpose]:
    """The active cookie purposes, consent-based first, then exempt ones."""
    purposes = list(purposes_catalogue().filter(code__in=COOKIE_PURPOSE_CODES))
    order = {code: index for index, code in enumerate(COOKIE_PURPOSE_CODES)}
    return sorted(purposes, key=lambda p: (not p.requires_consent, order.get(p.code, 99)))


def global_notice() -> PrivacyNotice | None:
    return PrivacyNotice.objects.filter(purpose__isnull=True).order_by("-published_at", "-id").first()


@dataclass(frozen=True)
class BrowserState:
    purpose_code: str
    status: str
    valid_until: datetime | None
    renewal_required: bool
    event_id: uuid.UUID
    decided_at: datetime


def browser_states(*, browser_id: str) -> dict[str, BrowserState]:
    """Current decision per purpose for a browser id, lapsed decisions left out.

    A decision whose ledger row cannot be read (its time altered in the database) is left
    out too: it proves no choice, so the widget asks again (the verification reports the
    row). Raises consent.services.ConsentError for a malformed browser id.
    """
    now = timezone.now()
    rows = list(
        ConsentState.objects.filter(
            Q(valid_until__isnull=True) | Q(valid_until__gt=now),
            subject__browser_id_hash=browser_id_hash(browser_id),
            subject__kind=SubjectKind.BROWSER,
        ).values_list("purpose__code", "status", "valid_until", "renewal_required", "event_id")
    )
    decided = _decision_times([row[4] for row in rows])
    states: dict[str, BrowserState] = {}
    for code, status, valid_until, renewal_required, event_id in rows:
        decided_at = decided.get(event_id)
        if not isinstance(decided_at, datetime):
            logger.warning("cookie decision left out: its ledger row cannot be read")
            continue
        states[code] = BrowserState(
            purpose_code=code,
            status=status,
            valid_until=valid_until,
            renewal_required=renewal_required,
            event_id=event_id,
            decided_at=decided_at,
        )
    return states


_UNREADABLE = (DatabaseError, ValueError, TypeError, OverflowError)


def _decision_times(event_ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """occurred_at of each event (None or absent when its stored value cannot be read)."""
    try:
        return dict(LedgerEvent.objects.filter(pk__in=event_ids).values_list("pk", "occurred_at"))
    except _UNREADABLE:
        found: dict[uuid.UUID, Any] = {}
        for event_id in event_ids:  # one at a time: only the unreadable row is left out
            try:
                found.update(LedgerEvent.objects.filter(pk=event_id).values_list("pk", "occurred_at"))
            except _UNREADABLE:
                continue
        return found


def purpose_allowed(purpose: Purpose, state: BrowserState | None) -> bool:
    """What the widget applies: silence means refusal, except for exempt purposes (objection)."""
    if purpose.requires_consent:
        return state is not None and state.status in GRANTING_EVENTS and not state.renewal_required
    return not (state is not None and state.status in OBJECTING_EVENTS)


def events_of_user(user: User) -> QuerySet[LedgerEvent]:
    """Events of the resident's account and of every browser attached to it."""
    return LedgerEvent.objects.filter(subject__user_id=user.pk)


def _sound(selection: QuerySet[LedgerEvent]) -> LedgerEvent | None:
    """The selected event, or None when its stored row is malformed or altered: its receipt
    would sign altered data (or the ORM's conversion would fail). The DPO learns of it from the
    ledger verification; the log names the position only."""
    problems = events_problems(selection)
    if problems:
        logger.warning(
            "receipt refused: ledger row altered at positions %s",
            sorted({problem.seq for problem in problems if problem.seq is not None}),
        )
        return None
    return selection.select_related("purpose", "purpose__client").first()


def event_of_user(*, user: User, event_id: uuid.UUID) -> LedgerEvent | None:
    """One of the resident's events (None if not theirs, or if its stored row was altered)."""
    return _sound(events_of_user(user).filter(pk=event_id))


def event_of_browser(*, browser_id: str, event_id: uuid.UUID) -> LedgerEvent | None:
    """An event recorded for this browser id, None as for `event_of_user` (raises ConsentError
    for a malformed id)."""
    return _sound(
        LedgerEvent.objects.filter(pk=event_id, subject__browser_id_hash=browser_id_hash(browser_id))
    )
