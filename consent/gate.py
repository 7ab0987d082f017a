"""The consent gate: is a purpose granted for a resident or a browser, now or at a past time.

The one question every other app asks the ledger before it uses personal data (claims
release, profiles, browsing ingestion, connectors). Re-exported by consent.selectors.

Public API:
- `consent_is_granted(*, user, purpose_code, at=None) -> bool`
- `consent_is_granted_for_browser(*, browser_id, purpose_code, at=None) -> bool`
- `consent_is_granted_for_browser_hash(*, browser_hash, purpose_code) -> bool`
- `consent_is_granted_for_subject(*, subject, purpose_code) -> bool` (consent.purpose_data.DataSubject)
- `consent_granted_many(*, user, purpose_codes) -> dict[str, bool]` and
  `consent_granted_many_for_subject(*, subject, purpose_codes) -> dict[str, bool]`: the gate
  now for several purposes of one resident (or browser) in one statement (profiles)
- `granted_purpose_codes(*, user) -> set[str]` (one query, e.g. for claims assembly)
- `granted_exists(purpose_code, *, user_ref= | browser_hash_ref=) -> Exists`: the same rule
  inside another app's queryset (sweeping data kept under a purpose)
- `account_gate_sql(user_column) -> AccountGateSQL` and `account_gate_decision(values)`:
  the same answer as `consent_is_granted(user=..., purpose_code=...)` now, as parts of the
  caller's own SQL statement, so that a caller reading a resident's row anyway gets the
  ledger's answer in the same round trip (the userinfo endpoint reads the access token,
  the resident and this gate in one statement: identity.oidc.access_tokens).

Semantics. Now (`at=None`): one indexed query on the current-state table (on PostgreSQL a
call of the PL/pgSQL function `consent_gate` / `consent_gate_many` of migration consent 0013,
which holds the same query and decision with its plan kept per connection; the plain
statements below on SQLite, and as the reference in tests/consent/test_read_functions.py). A purpose that
needs consent is granted when the latest decision is `given`/`renewed`, `valid_until` is in
the future and no material notice came after it (`renewal_required`). A purpose that needs
no consent (exempt audience measurement, public task) is granted unless the latest decision
is an objection (`refused`/`withdrawn`/`revoked`) still in force. Unknown purpose codes
raise `UnknownPurpose` (`account_gate_decision` answers None instead); retired purposes are
never granted. Historical (`at=T`, audits): answered from the ledger itself — the latest
event of that subject and purpose recorded at or before T (index subject, purpose, seq:
only that subject+purpose's events are read), whether it was valid at T, and whether a
material notice for the purpose (or global) was published between that event and T.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from consent.models import (
    GRANTING_EVENTS,
    OBJECTING_EVENTS,
    ConsentState,
    LedgerEvent,
    PrivacyNotice,
    Purpose,
    Subject,
    SubjectKind,
)
from consent.prepared import prepared_fetch
from consent.purpose_data import DataSubject
from consent.services import UnknownPurpose, browser_id_hash
from identity.models import User

# Raw SQL on purpose: this is the hot path (every claim release, every browsing event), and
# building the equivalent ORM query costs ~100x more than running it (1.5 ms vs 15 us on
# SQLite). One statement, parameters only, table names from the models; it stays one
# indexed lookup: purpose by its unique code, the subject by its unique user or browser
# hash, the state by its unique (subject, purpose) pair.
_GATE_SQL = """
SELECT p.is_active, p.requires_consent, s.status, s.renewal_required,
       CASE WHEN s.valid_until IS NULL OR s.valid_until > %s THEN 1 ELSE 0 END
FROM {purpose} p
LEFT JOIN {subject} sub ON {subject_condition}
LEFT JOIN {state} s ON s.subject_id = sub.id AND s.purpose_id = p.id
WHERE p.code = %s
"""
_GATE_BY_USER = _GATE_SQL.format(
    purpose=Purpose._meta.db_table,
    subject=Subject._meta.db_table,
    state=ConsentState._meta.db_table,
    subject_condition=f"sub.user_id = %s AND sub.kind = '{SubjectKind.ACCOUNT.value}'",
)
_GATE_BY_BROWSER = _GATE_SQL.format(
    purpose=Purpose._meta.db_table,
    subject=Subject._meta.db_table,
    state=ConsentState._meta.db_table,
    subject_condition="sub.browser_id_hash = %s",
)
# Several purposes of one subject in one statement: the same joins, the purposes by their
# unique code (one array parameter on PostgreSQL, so one prepared statement whatever their
# number; a list of placeholders on SQLite).
_MANY_SQL = """
SELECT p.code, p.is_active, p.requires_consent, s.status, s.renewal_required,
       CASE WHEN s.valid_until IS NULL OR s.valid_until > %s THEN 1 ELSE 0 END
FROM {purpose} p
LEFT JOIN {subject} sub ON {subject_condition}
LEFT JOIN {state} s ON s.subject_id = sub.id AND s.purpose_id = p.id
WHERE p.code {codes}
"""
_MANY_BY = {
    kind: _MANY_SQL.format(
        purpose=Purpose._meta.db_table,
        subject=Subject._meta.db_table,
        state=ConsentState._meta.db_table,
        subject_condition=condition,
        codes="{codes}",
    )
    for kind, condition in (
        ("user", f"sub.user_id = %s AND sub.kind = '{SubjectKind.ACCOUNT.value}'"),
        ("browser", "sub.browser_id_hash = %s"),
    )
}
_GRANTING = {str(e) for e in GRANTING_EVENTS}
_OBJECTING = {str(e) for e in OBJECTING_EVENTS}
_VALID_UNTIL = ConsentState._meta.get_field("valid_until")
_USER_KEY = Subject._meta.get_field("user").target_field
_PLAIN_BY = {"user": _GATE_BY_USER, "browser": _GATE_BY_BROWSER}
# PostgreSQL: the same join and the decision in PL/pgSQL functions (migration consent 0013),
# whose plans the backend keeps per connection, prepared statements or not; the caller's
# statement is a bare call, cheap to plan. One text for every lookup (the subject as an
# account id or, that being NULL, a browser hash).
_GATE_CALL = "SELECT consent_gate(%s::uuid, %s::text, %s::text, %s::timestamptz)"
_GATE_MANY_CALL = (
    "SELECT code, granted FROM consent_gate_many(%s::uuid, %s::text, %s::text[], %s::timestamptz)"
)


def _now_param() -> Any:
    return _VALID_UNTIL.get_db_prep_value(timezone.now(), connection)


def _granted_now(user_pk: Any, browser_hash: str | None, purpose_code: str) -> bool:
    """The gate now for the account `user_pk` or, that being None, the browser `browser_hash`."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql":
        # The id as it is (the call casts it to uuid, as get_db_prep_value would convert it);
        # timezone.now() as the plain statement's parameter was (an aware datetime is what
        # DateTimeField's get_db_prep_value gives PostgreSQL): the server's clock is not used.
        row = prepared_fetch(_GATE_CALL, [user_pk, browser_hash, purpose_code, timezone.now()], db=db)
        if row is None or row[0] is None:
            raise UnknownPurpose(f"unknown purpose {purpose_code!r}")
        return bool(row[0])
    if user_pk is not None:
        return _granted_now_plain("user", _USER_KEY.get_db_prep_value(user_pk, db), purpose_code)
    return _granted_now_plain("browser", browser_hash, purpose_code)


def _granted_now_plain(kind: str, subject_key: Any, purpose_code: str) -> bool:
    """The gate now by the plain statement (SQLite; the reference the functions are tested
    against on PostgreSQL)."""
    # Parameter order follows the statement: valid_until comparison, subject, code.
    row = prepared_fetch(_PLAIN_BY[kind], [_now_param(), subject_key, purpose_code])
    if row is None:
        raise UnknownPurpose(f"unknown purpose {purpose_code!r}")
    return _gate_decision(row)


def _granted_many(user_pk: Any, browser_hash: str | None, purpose_codes: Iterable[str]) -> dict[str, bool]:
    codes = sorted(set(purpose_codes))
    if not codes:
        return {}
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql":
        params = [user_pk, browser_hash, codes, timezone.now()]
        answers = {
            code: bool(granted)
            for code, granted in prepared_fetch(_GATE_MANY_CALL, params, all_rows=True, db=db)
        }
    elif user_pk is not None:
        answers = _granted_many_plain("user", _USER_KEY.get_db_prep_value(user_pk, db), codes)
    else:
        answers = _granted_many_plain("browser", browser_hash, codes)
    unknown = [code for code in codes if code not in answers]
    if unknown:
        raise UnknownPurpose(f"unknown purpose {unknown[0]!r}")
    return answers


def _granted_many_plain(kind: str, subject_key: Any, codes: list[str]) -> dict[str, bool]:
    """{code: answer} for the known codes among `codes`, by the plain statement (SQLite; the
    reference on PostgreSQL)."""
    params: list[Any]
    if connection.vendor == "postgresql":
        sql, params = _MANY_BY[kind].format(codes="= ANY(%s::text[])"), [codes]
    else:
        sql, params = _MANY_BY[kind].format(codes=f"IN ({', '.join(['%s'] * len(codes))})"), codes
    rows = prepared_fetch(sql, [_now_param(), subject_key, *params], all_rows=True)
    return {row[0]: _gate_decision(row[1:]) for row in rows}


@dataclass(frozen=True)
class AccountGateSQL:
    """The gate for an account, as parts of a caller's own statement (one round trip).

    - `columns`: five columns to put in the caller's SELECT list (aliases `gp`, `gsub`, `gs`
      are taken by the joins);
    - `joins`: LEFT JOINs to put after the caller's FROM clause, where `user_column` (given
      to `account_gate_sql`) names the resident's id in the caller's tables. Being LEFT
      JOINs they never drop the caller's row: an unknown purpose or an account without a
      consent subject only leaves the gate's columns NULL;
    - `params(purpose_code)`: the joins' parameters, in order, to place where the joins
      stand among the statement's parameters.

    The caller passes the five selected values (a tuple, in `columns` order) to
    `account_gate_decision`, which answers as `consent_is_granted(user=..., purpose_code=...)`
    does now (tests/consent/test_gate.py checks they agree).
    """

    columns: str
    joins: str

    @staticmethod
    def params(purpose_code: str) -> list[Any]:
        return [purpose_code, _now_param()]


def account_gate_sql(user_column: str) -> AccountGateSQL:
    """The gate's columns and joins for the resident whose id is `user_column`.

    `user_column` is interpolated into the SQL: it must be a column reference the caller
    wrote (e.g. `u."id"`), never input. Everything else comes from the models' metadata;
    values are parameters.
    """
    return AccountGateSQL(
        columns="gp.is_active, gp.requires_consent, gs.status, gs.renewal_required, gs.valid_until",
        joins=(
            f"LEFT JOIN {Purpose._meta.db_table} gp ON gp.code = %s "
            f"LEFT JOIN {Subject._meta.db_table} gsub ON gsub.user_id = {user_column} "
            f"AND gsub.kind = '{SubjectKind.ACCOUNT.value}' "
            f"LEFT JOIN {ConsentState._meta.db_table} gs ON gs.subject_id = gsub.id "
            "AND gs.purpose_id = gp.id AND (gs.valid_until IS NULL OR gs.valid_until > %s)"
        ),
    )


def account_gate_decision(values: tuple[Any, ...]) -> bool | None:
    """consent_is_granted's answer from AccountGateSQL's columns; None if the purpose is unknown."""
    is_active, requires_consent, status, renewal_required, _valid_until = values
    if is_active is None:
        return None
    # The join kept only a state in force (its valid_until condition).
    return _gate_decision((is_active, requires_consent, status, renewal_required, status is not None))


def _gate_decision(row: tuple[Any, ...]) -> bool:
    is_active, requires_consent, status, renewal_required, in_force = row
    if not is_active:
        return False
    in_force = status is not None and bool(in_force)
    if requires_consent:
        return in_force and status in _GRANTING and not renewal_required
    return not (in_force and status in _OBJECTING)


def _granted_at(subject_filter: Q, purpose_code: str, at: datetime) -> bool:
    if timezone.is_naive(at):
        raise ValueError("at must be timezone-aware")
    purpose = Purpose.objects.filter(code=purpose_code).first()
    if purpose is None:
        raise UnknownPurpose(f"unknown purpose {purpose_code!r}")
    event = (
        LedgerEvent.objects.filter(subject_filter, purpose=purpose, occurred_at__lte=at)
        .order_by("-seq")
        .only("event_type", "occurred_at", "valid_until")
        .first()
    )
    in_force = event is not None and (event.valid_until is None or event.valid_until > at)
    if not purpose.requires_consent:
        return not (in_force and event is not None and event.event_type in OBJECTING_EVENTS)
    if not in_force or event is None or event.event_type not in GRANTING_EVENTS:
        return False
    renewal_due = PrivacyNotice.objects.filter(
        Q(purpose=purpose) | Q(purpose__isnull=True),
        material=True,
        published_at__gt=event.occurred_at,
        published_at__lte=at,
    ).exists()
    return not renewal_due


def consent_is_granted(*, user: User, purpose_code: str, at: datetime | None = None) -> bool:
    """Is `purpose_code` granted for this resident now (one indexed query), or at time `at`?"""
    if user is None or getattr(user, "pk", None) is None:
        return False
    if at is None:
        return _granted_now(user.pk, None, purpose_code)
    return _granted_at(Q(subject__user_id=user.pk, subject__kind=SubjectKind.ACCOUNT), purpose_code, at)


def consent_is_granted_for_browser(*, browser_id: str, purpose_code: str, at: datetime | None = None) -> bool:
    """The gate for a visitor without an account, by the random browser id of the widget."""
    hashed = browser_id_hash(browser_id)
    if at is None:
        return _granted_now(None, hashed, purpose_code)
    return _granted_at(Q(subject__browser_id_hash=hashed), purpose_code, at)


def consent_is_granted_for_browser_hash(*, browser_hash: str, purpose_code: str) -> bool:
    """The gate now, for a browser known by its id's hash (data kept under the hash only)."""
    return _granted_now(None, browser_hash, purpose_code)


def consent_is_granted_for_subject(*, subject: DataSubject, purpose_code: str) -> bool:
    """The gate now for a data subject of consent.purpose_data (an account id or a browser hash)."""
    if subject.user_id is not None:
        return _granted_now(subject.user_id, None, purpose_code)
    return _granted_now(None, subject.browser_hash, purpose_code)


def consent_granted_many(*, user: User, purpose_codes: Iterable[str]) -> dict[str, bool]:
    """`consent_is_granted(user=user, purpose_code=code)` now for each code, in one statement
    ({code: answer}; UnknownPurpose if a code is unknown, as the single form raises)."""
    codes = list(purpose_codes)
    if user is None or getattr(user, "pk", None) is None:
        return dict.fromkeys(codes, False)
    return _granted_many(user.pk, None, codes)


def consent_granted_many_for_subject(
    *, subject: DataSubject, purpose_codes: Iterable[str]
) -> dict[str, bool]:
    """`consent_is_granted_for_subject` now for each code, in one statement ({code: answer})."""
    if subject.user_id is not None:
        return _granted_many(subject.user_id, None, purpose_codes)
    return _granted_many(None, subject.browser_hash, purpose_codes)


def granted_exists(purpose_code: str, *, user_ref: str = "", browser_hash_ref: str = "") -> Exists:
    """An `Exists` expression, true for the rows of the caller's queryset whose subject grants
    `purpose_code` now (a consent-based purpose: given/renewed, in force, not flagged): the
    subject is the account in the column `user_ref`, or the browser whose id hash is in
    `browser_hash_ref`. For sweeping data kept under a purpose (profiles_maintain)."""
    if bool(user_ref) == bool(browser_hash_ref):
        raise ValueError("give exactly one of user_ref and browser_hash_ref")
    now = timezone.now()
    states = ConsentState.objects.filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=now),
        purpose__code=purpose_code,
        purpose__is_active=True,
        status__in=GRANTING_EVENTS,
        renewal_required=False,
    )
    if user_ref:
        states = states.filter(subject__user_id=OuterRef(user_ref), subject__kind=SubjectKind.ACCOUNT)
    else:
        states = states.filter(subject__browser_id_hash=OuterRef(browser_hash_ref))
    return Exists(states)


def granted_purpose_codes(*, user: User) -> set[str]:
    """Codes of every purpose granted now for this resident (one query), exempt ones included."""
    now = timezone.now()
    in_force = Q(valid_until__isnull=True) | Q(valid_until__gt=now)
    states = ConsentState.objects.filter(
        in_force, subject__user_id=user.pk, subject__kind=SubjectKind.ACCOUNT, purpose=OuterRef("pk")
    )
    rows = (
        Purpose.objects.filter(is_active=True)
        .annotate(
            granted=Exists(states.filter(status__in=GRANTING_EVENTS, renewal_required=False)),
            objected=Exists(states.filter(status__in=OBJECTING_EVENTS)),
        )
        .filter(Q(requires_consent=True, granted=True) | Q(requires_consent=False, objected=False))
        .values_list("code", flat=True)
    )
    return set(rows)
