"""Reads of the DPO console and API: event search, statistics, exports, register.

Everything here reads. Each read of a resident's personal data is itself logged by the
caller with consent.dpo.access.log_read (a write, so not here).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, transaction
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate, TruncDay, TruncMonth, TruncWeek
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _
from oauth2_provider.models import get_application_model

from consent import ledger
from consent.api.selectors import COOKIE_PURPOSE_CODES
from consent.erasure import PartnerStatus, partners_states
from consent.models import (
    DailyCount,
    EventType,
    LedgerEvent,
    Purpose,
    RightsRequest,
    RightsRequestState,
    Subject,
)
from consent.selectors import (
    LedgerProblem,
    LedgerTampered,
    events_check,
    events_problems,
    events_search,
    processing_register,
    purposes_catalogue,
)
from identity.models import User
from identity.selectors import user_by_email

PAGE_SIZE = 50
MAX_BUCKETS = 400
BUCKETS = {"day": TruncDay, "week": TruncWeek, "month": TruncMonth}

GRANTS = (EventType.GIVEN, EventType.RENEWED)
REFUSALS = (EventType.REFUSED,)
WITHDRAWALS = (EventType.WITHDRAWN, EventType.REVOKED)
EXPIRIES = (EventType.EXPIRED,)
SERIES_OF = {
    **{str(t): "grants" for t in GRANTS},
    **{str(t): "refusals" for t in REFUSALS},
    **{str(t): "withdrawals" for t in WITHDRAWALS},
    **{str(t): "expiries" for t in EXPIRIES},
}
_EVENT_TYPES = frozenset(EventType.values)
SERIES_KEYS = ("grants", "refusals", "withdrawals", "expiries")


class FilterError(ValueError):
    """Bad search or statistics parameters; `errors` maps each parameter to its problem."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _parse_bound(value: str, *, end: bool) -> datetime:
    """A date (local day, `end` = the day after) or an ISO 8601 datetime (naive = local time)."""
    value = value.strip()
    day = parse_date(value) if len(value) == 10 else None
    if day is not None:
        return datetime.combine(day + timedelta(days=1) if end else day, time.min, tzinfo=_tz())
    try:
        moment = parse_datetime(value)
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError(value)
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=_tz())


# --- Event search ------------------------------------------------------------------------------


@dataclass
class EventFilters:
    user_email: str = ""
    # The account's id instead of its email, so that no address ever appears in a URL
    # (the console turns an email search into ?resident=<id>).
    resident_id: str = ""
    purpose: str = ""
    partner: str = ""
    event_type: str = ""
    date_from: str = ""
    date_to: str = ""
    since: datetime | None = None
    until: datetime | None = None
    resident: User | None = None
    page: int = 1

    @property
    def by_resident(self) -> bool:
        return bool(self.user_email or self.resident_id)

    @property
    def resident_found(self) -> bool | None:
        return (self.resident is not None) if self.by_resident else None

    def params(self) -> dict[str, str]:
        pairs = {
            "user_email": self.user_email,
            "resident": self.resident_id,
            "purpose": self.purpose,
            "partner": self.partner,
            "type": self.event_type,
            "from": self.date_from,
            "to": self.date_to,
        }
        return {key: value for key, value in pairs.items() if value}

    def query_string(self) -> str:
        return urlencode(self.params())

    def without_email(self) -> EventFilters:
        """The same search naming the account by id (for URLs: pagination, exports, redirects)."""
        if not self.user_email or self.resident is None:
            return self
        return replace(self, user_email="", resident_id=str(self.resident.pk))

    def for_log(self) -> dict[str, Any]:
        """The filters without the email address (the resident is the audit row's subject)."""
        data: dict[str, Any] = {
            key: value for key, value in self.params().items() if key not in ("user_email", "resident")
        }
        if self.by_resident:
            data["by_resident"] = True
        return data


def parse_filters(params: Mapping[str, Any]) -> EventFilters:
    """Validate search parameters (console form and API share them). Raises FilterError."""
    reading = _FilterReading(params)
    filters = EventFilters()
    for read in _FILTER_READERS:
        read(reading, filters)
    if reading.errors:
        raise FilterError(reading.errors)
    if filters.user_email:
        filters.resident = user_by_email(filters.user_email)
    return filters


class _FilterReading:
    """The parameters being read and the problems found so far (parameter → message)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.errors: dict[str, str] = {}

    def text(self, name: str, limit: int = 255) -> str:
        value = self.params.get(name) or ""
        if not isinstance(value, str):
            self.errors[name] = _("valeur invalide")
            return ""
        value = value.strip()
        if len(value) > limit:
            self.errors[name] = _("valeur trop longue")
            return ""
        if "\x00" in value:  # PostgreSQL refuses it in text: an invalid value, not a 500
            self.errors[name] = _("valeur invalide")
            return ""
        return value


def _read_user_email(reading: _FilterReading, filters: EventFilters) -> None:
    filters.user_email = reading.text("user_email", 254).lower()
    if filters.user_email:
        try:
            validate_email(filters.user_email)
        except ValidationError:
            reading.errors["user_email"] = _("adresse e-mail invalide")


def _read_resident(reading: _FilterReading, filters: EventFilters) -> None:
    filters.resident_id = reading.text("resident", 36)
    if filters.resident_id and filters.user_email:
        reading.errors["resident"] = _("donner l'adresse e-mail ou le compte, pas les deux")
    elif filters.resident_id:
        try:
            filters.resident = User.objects.filter(pk=uuid.UUID(filters.resident_id)).first()
        except ValueError:
            filters.resident = None
        if filters.resident is None:
            reading.errors["resident"] = _("compte inconnu")
        else:
            filters.resident_id = str(filters.resident.pk)


def _read_purpose(reading: _FilterReading, filters: EventFilters) -> None:
    filters.purpose = reading.text("purpose")
    if filters.purpose and not Purpose.objects.filter(code=filters.purpose).exists():
        reading.errors["purpose"] = _("finalité inconnue")


def _read_partner(reading: _FilterReading, filters: EventFilters) -> None:
    filters.partner = reading.text("partner", 100)
    if (
        filters.partner
        and not get_application_model().objects.filter(client_id=filters.partner).exists()
        and not LedgerEvent.objects.filter(partner_client_id=filters.partner).exists()
    ):
        reading.errors["partner"] = _("service partenaire inconnu")


def _read_event_type(reading: _FilterReading, filters: EventFilters) -> None:
    filters.event_type = reading.text("type", 20)
    if filters.event_type and filters.event_type not in EventType.values:
        reading.errors["type"] = _("type d'événement inconnu")


def _read_period(reading: _FilterReading, filters: EventFilters) -> None:
    filters.date_from = reading.text("from", 40)
    filters.date_to = reading.text("to", 40)
    for name, raw, end in (("from", filters.date_from, False), ("to", filters.date_to, True)):
        if not raw:
            continue
        try:
            moment = _parse_bound(raw, end=end)
        except ValueError:
            reading.errors[name] = _("date invalide (AAAA-MM-JJ)")
            continue
        if end:
            filters.until = moment
        else:
            filters.since = moment
    if filters.since and filters.until and filters.since >= filters.until:
        reading.errors["to"] = _("la fin de période précède le début")


def _read_page(reading: _FilterReading, filters: EventFilters) -> None:
    page = reading.params.get("page") or "1"
    try:
        filters.page = int(page)
        if filters.page < 1:
            raise ValueError
    except (TypeError, ValueError):
        reading.errors["page"] = _("numéro de page invalide")


# In this order: the resident check needs the email, and errors are reported in this order.
_FILTER_READERS = (
    _read_user_email,
    _read_resident,
    _read_purpose,
    _read_partner,
    _read_event_type,
    _read_period,
    _read_page,
)


def search(filters: EventFilters) -> QuerySet[LedgerEvent]:
    if filters.by_resident and filters.resident is None:
        return LedgerEvent.objects.none()
    return events_search(
        user=filters.resident,
        purpose_code=filters.purpose or None,
        partner_client_id=filters.partner or None,
        since=filters.since,
        until=filters.until,
        event_types=[filters.event_type] if filters.event_type else None,
    )  # no join to the subject: a row naming none would silently vanish (events_check reports it)


def checked_page(events: QuerySet[LedgerEvent], page: Any) -> None:
    """Raise LedgerTampered if a row of this page is malformed or altered: the page is then not
    shown (the ORM's conversion of a malformed value raised, finding 10's class)."""
    if page.paginator.count:
        events_check(events[page.start_index() - 1 : page.end_index()])


def partners_known() -> list[tuple[str, str]]:
    """(client_id, name) of registered clients, plus partner ids seen only in the ledger."""
    clients = dict(get_application_model().objects.order_by("name").values_list("client_id", "name"))
    seen = (
        LedgerEvent.objects.exclude(partner_client_id="")
        .order_by()
        .values_list("partner_client_id", flat=True)
        .distinct()
    )
    try:
        seen_ids = list(seen)
    except (DatabaseError, ValueError):
        seen_ids = []  # an undecodable value (altered row): the verification reports it
    for client_id in seen_ids:
        if isinstance(client_id, str):  # SQLite keeps any type an altered row was given
            clients.setdefault(client_id, client_id)
    return sorted(clients.items(), key=lambda item: str(item[1]).lower())


def subject_user(event: LedgerEvent) -> User | None:
    """The account behind an event's pseudonym (None for an unlinked browser or after erasure)."""
    user_id = Subject.objects.filter(pk=event.subject_id).values_list("user_id", flat=True).first()
    return User.objects.filter(pk=user_id).first() if user_id else None


# --- Serialisation and exports ---------------------------------------------------------------

EXPORT_FIELDS = (
    "id",
    "seq",
    "event_type",
    "subject",
    "purpose",
    "notice_version",
    "notice_sha256",
    "collection_method",
    "actor_type",
    "actor_id",
    "partner",
    "occurred_at",
    "valid_until",
    "linked_from",
    "has_details",
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def event_dict(event: LedgerEvent) -> dict[str, Any]:
    """An event as the DPO sees it in lists and exports: pseudonym, codes, times (no details)."""
    return {
        "id": str(event.id),
        "seq": event.seq,
        "event_type": event.event_type,
        "subject": str(event.subject_id),
        "purpose": event.purpose_code,
        "notice_version": event.notice_version,
        "notice_sha256": event.notice_sha256 or None,
        "collection_method": event.collection_method,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id or None,
        "partner": event.partner_client_id or None,
        "occurred_at": _iso(event.occurred_at),
        "valid_until": _iso(event.valid_until),
        "linked_from": str(event.linked_from) if event.linked_from else None,
        "has_details": bool(event.details_ciphertext),
    }


def _csv_safe(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheet formula injection (OWASP CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(events: QuerySet[LedgerEvent]) -> Iterator[str]:
    """The selection as CSV; call `events_check(events)` first (a streamed answer cannot turn
    into a refusal once begun)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return value

    writer.writerow(EXPORT_FIELDS)
    yield flush()
    for event in events.iterator(chunk_size=2000):
        row = event_dict(event)
        writer.writerow([_csv_safe(row[name]) for name in EXPORT_FIELDS])
        yield flush()


def export_json(events: QuerySet[LedgerEvent], filters: EventFilters) -> dict[str, Any]:
    """The selection as a JSON document; raises LedgerTampered (nothing exported) if a selected
    row is malformed or altered (docs/dpo.md: an export never leaves a row out silently)."""
    events_check(events)
    rows = [event_dict(event) for event in events.iterator(chunk_size=2000)]
    return {
        "generated_at": timezone.now().isoformat(),
        "filters": filters.for_log(),
        "count": len(rows),
        "events": rows,
    }


# --- Statistics --------------------------------------------------------------------------------


@dataclass
class StatsQuery:
    purpose: str = ""
    bucket: str = "week"
    date_from: date | None = None
    date_to: date | None = None

    def params(self) -> dict[str, str]:
        pairs = {
            "purpose": self.purpose,
            "bucket": self.bucket,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {key: value for key, value in pairs.items() if value}


def _bucket_start(day: date, bucket: str) -> date:
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def _bucket_next(start: date, bucket: str) -> date:
    if bucket == "week":
        return start + timedelta(days=7)
    if bucket == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def parse_stats(params: Mapping[str, Any]) -> StatsQuery:
    errors: dict[str, str] = {}
    query = StatsQuery()
    purpose = params.get("purpose") or ""
    if purpose:
        if not isinstance(purpose, str) or not Purpose.objects.filter(code=purpose).exists():
            errors["purpose"] = _("finalité inconnue")
        else:
            query.purpose = purpose
    bucket = params.get("bucket") or "week"
    if bucket not in BUCKETS:
        errors["bucket"] = _("choisir day, week ou month")
    else:
        query.bucket = bucket
    today = timezone.localdate()
    for name in ("from", "to"):
        raw = params.get(name) or ""
        if not raw:
            continue
        try:
            parsed = parse_date(raw) if isinstance(raw, str) else None
        except ValueError:
            parsed = None
        if parsed is None:
            errors[name] = _("date invalide (AAAA-MM-JJ)")
        elif name == "from":
            query.date_from = parsed
        else:
            query.date_to = parsed
    if errors:
        raise FilterError(errors)
    query.date_to = query.date_to or today
    if query.date_from is None:
        span = {"day": timedelta(days=29), "week": timedelta(weeks=11), "month": timedelta(days=365)}
        query.date_from = query.date_to - span[query.bucket]
    if query.date_from > query.date_to:
        raise FilterError({"to": _("la fin de période précède le début")})
    if len(bucket_starts(query)) > MAX_BUCKETS:
        raise FilterError({"bucket": _("période trop longue pour ce découpage (400 intervalles au plus)")})
    return query


def bucket_starts(query: StatsQuery) -> list[date]:
    assert query.date_from is not None and query.date_to is not None
    starts: list[date] = []
    current = _bucket_start(query.date_from, query.bucket)
    while current <= query.date_to and len(starts) <= MAX_BUCKETS:
        starts.append(current)
        current = _bucket_next(current, query.bucket)
    return starts


@dataclass
class PurposeStats:
    code: str
    title: str
    buckets: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "title": self.title,
            "totals": self.totals,
            "buckets": [{**row, "start": row["start"].isoformat()} for row in self.buckets],
        }


def consent_stats(query: StatsQuery, *, language: str = "fr") -> list[PurposeStats]:
    """Grants (given, renewed), refusals, withdrawals (withdrawn, revoked) and expiries per bucket.

    Copies made when a browser's history is attached to an account (`linked_from`) are
    left out: they repeat a decision already counted.
    """
    assert query.date_from is not None and query.date_to is not None
    tz = _tz()
    since = datetime.combine(query.date_from, time.min, tzinfo=tz)
    until = datetime.combine(query.date_to + timedelta(days=1), time.min, tzinfo=tz)
    starts = bucket_starts(query)
    counts: dict[str, dict[date, dict[str, int]]] = {}
    for day, purpose_code, event_type, n in _day_counts(query, since, until):
        series = SERIES_OF.get(event_type)
        if series is None:  # "requested": not a decision
            continue
        slot = counts.setdefault(purpose_code, {}).setdefault(
            _bucket_start(day, query.bucket), dict.fromkeys(SERIES_KEYS, 0)
        )
        slot[series] += n
    purposes = {p.code: p for p in purposes_catalogue(include_inactive=True)}
    codes = [query.purpose] if query.purpose else sorted(counts, key=lambda c: (c not in purposes, c))
    result = []
    for code in codes:
        purpose = purposes.get(code)
        stats = PurposeStats(code=code, title=purpose.title(language) if purpose else code)
        per_bucket = counts.get(code, {})
        for start in starts:
            stats.buckets.append({"start": start, **per_bucket.get(start, dict.fromkeys(SERIES_KEYS, 0))})
        stats.totals = {key: sum(row[key] for row in stats.buckets) for key in SERIES_KEYS}
        result.append(stats)
    return result


def _day_counts(query: StatsQuery, since: datetime, until: datetime) -> list[tuple[date, str, str, int]]:
    """(day, purpose code, event type, events) over the period, linked copies left out: the
    pre-aggregated counts of the events the sequencer has integrated (consent_dailycount, a
    few rows per day), plus the events still pending (past the ledger head's size, a batch at
    most), counted from the events themselves. The head row is locked against the sequencer
    for the two reads (appends go on): each event is counted exactly once."""
    assert query.date_from is not None and query.date_to is not None
    with transaction.atomic():
        size = ledger.head_size_shared()
        counted = DailyCount.objects.filter(day__gte=query.date_from, day__lte=query.date_to)
        pending = LedgerEvent.objects.filter(
            seq__gte=size, occurred_at__gte=since, occurred_at__lt=until, linked_from__isnull=True
        )
        if query.purpose:
            counted = counted.filter(purpose_code=query.purpose)
            pending = pending.filter(purpose_code=query.purpose)
        rows = list(counted.values_list("day", "purpose_code", "event_type", "count"))
        pending_rows = (
            pending.annotate(day=TruncDate("occurred_at", tzinfo=_tz()))
            .values_list("day", "purpose_code", "event_type")
            .annotate(n=Count("id"))
            .order_by()
        )
        try:
            fetched = list(pending_rows)
        except (DatabaseError, ValueError, TypeError, OverflowError):
            fetched = None
        if fetched is None or any(
            event_type not in _EVENT_TYPES or not isinstance(code, str) or not isinstance(day, date)
            for day, code, event_type, _n in fetched
        ):
            # A value the application never writes (an altered row): name it rather than
            # leaving it out of the counts or failing on it. (The integrated events were
            # checked by the sequencer before they were counted.)
            problems = events_problems(pending)
            raise LedgerTampered(problems or [_unreadable_problem()])
    return rows + fetched


def _unreadable_problem() -> Any:
    return LedgerProblem(kind="unreadable", detail="a ledger row in this period cannot be read")


# --- Register of processing (GDPR Art. 30) -----------------------------------------------------

SECURITY_MEASURES = {
    "fr": [
        "Registre des consentements en journal de Merkle (RFC 9162) avec têtes d'arbre signées",
        "Détails personnels chiffrés (AES-256-GCM) par sujet, clé détruite à l'effacement",
        "Pseudonymisation des sujets dans le registre",
        "Jetons, codes et secrets stockés hachés ; mots de passe en Argon2id",
        "Journaux sans données personnelles ; lectures du DPO journalisées",
    ],
    "en": [
        "Consent ledger as a Merkle log (RFC 9162) with signed tree heads",
        "Personal details encrypted (AES-256-GCM) per subject, key destroyed at erasure",
        "Pseudonymised subjects in the ledger",
        "Tokens, codes and secrets stored hashed; passwords with Argon2id",
        "Logs without personal data; DPO reads are logged",
    ],
}


DATA_SUBJECTS = {
    "residents": {"fr": ["Résidents titulaires d'un compte"], "en": ["Residents with an account"]},
    "visitors": {
        "fr": ["Visiteurs des sites partenaires (identifiant de navigateur aléatoire)"],
        "en": ["Visitors of partner sites (random browser id)"],
    },
}


def register_document(language: str = "fr") -> dict[str, Any]:
    """The records of processing (Art. 30(1)) built from the purpose catalogue."""
    english = language == "en"
    lang = "en" if english else "fr"
    controller = settings.CONSENT_CONTROLLER
    cookie_codes = set(COOKIE_PURPOSE_CODES)
    processing = []
    for row in processing_register(language=language):
        subjects = list(DATA_SUBJECTS["residents"][lang])
        if row["code"] in cookie_codes:
            subjects += DATA_SUBJECTS["visitors"][lang]
        processing.append(
            {
                **row,
                "data_subjects": subjects,
                "third_country_transfers": "None (hosted in France)"
                if english
                else "Aucun (hébergement en France)",
            }
        )
    return {
        "generated_at": timezone.now().isoformat(),
        "language": "en" if english else "fr",
        "controller": {
            "name": controller["name"],
            "address": controller["address"],
            "email": controller["email"],
            "phone": controller["phone"],
            "url": controller["url"],
        },
        "dpo": {"contact": controller["contact"], "email": controller["email"]},
        "security_measures": SECURITY_MEASURES[lang],
        "processing": processing,
    }


# --- Rights requests (GDPR Art. 15, 17, 20) ----------------------------------------------------

OPEN_STATES = (RightsRequestState.WAITING, RightsRequestState.RUNNING, RightsRequestState.FAILED)


@dataclass(frozen=True)
class RightsRequestRow:
    request: RightsRequest
    age_days: int
    overdue: bool
    partners: list[PartnerStatus]


@dataclass
class PartnerSummary:
    """One partner across the rights requests listed: how many it was sent, answered, late
    (answered after the one-month deadline, or still unanswered past it), failing (its
    message failing or dead-lettered), still waiting (queued or delivered, no answer)."""

    client_id: str
    name: str
    requests: int = 0
    answered: int = 0
    late: int = 0
    failing: int = 0
    waiting: int = 0


def rights_requests(*, open_only: bool = False, now: datetime | None = None) -> list[RightsRequestRow]:
    """Exports and erasures for the DPO's register of rights requests: open ones first (a
    failed one is open: it needs someone), each with its age, whether the one-month deadline
    (GDPR Art. 12(3)) has passed unanswered, and each partner's state: its answer (an
    erasure's erased, refused, not_supported, no_connector; an export's answered, refused,
    not_supported, failed; requested by email) with its date, else where its message stands
    in the outbox (queued, failing, dead letter). Ids and dates only: the resident is not
    named here (an erased one no longer exists)."""
    now = now or timezone.now()
    selection = RightsRequest.objects.defer("archive").order_by("requested_at")
    if open_only:
        selection = selection.filter(state__in=OPEN_STATES)
    requests = list(selection)
    partners = partners_states(requests)
    rows = []
    for request in requests:
        finished = request.completed_at if request.state == RightsRequestState.DONE else None
        answered_by = finished or now
        rows.append(
            RightsRequestRow(
                request=request,
                age_days=(now - request.requested_at).days,
                overdue=request.state != RightsRequestState.CANCELLED and answered_by > request.deadline,
                partners=partners[request.pk],
            )
        )
    rows.sort(key=lambda row: (row.request.state not in OPEN_STATES, row.request.requested_at))
    return rows


def partner_summary(rows: list[RightsRequestRow], *, now: datetime | None = None) -> list[PartnerSummary]:
    """Per partner, over the register's rows (docs/dpo.md, "Partners' answers")."""
    now = now or timezone.now()
    summary: dict[str, PartnerSummary] = {}
    for row in rows:
        for partner in row.partners:
            item = summary.setdefault(
                partner.client_id, PartnerSummary(partner.client_id, partner.name or partner.client_id)
            )
            item.requests += 1
            if partner.answered:
                item.answered += 1
                answered_at = partner.at or now
                item.late += answered_at > row.request.deadline
            else:
                item.failing += partner.failing
                item.waiting += not partner.failing
                item.late += now > row.request.deadline
    return sorted(summary.values(), key=lambda item: (item.name.casefold(), item.client_id))
