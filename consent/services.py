"""Writes of the consent app: the only way other apps change purposes, notices and the ledger.

Public API (keyword-only, one transaction each, `ConsentError` on bad input with nothing
written):

- `consent_record(*, purpose_code, event_type, collection_method, user=None, browser_id=None,
  acting_user=None, acting_client=None, valid_until=None, details=None) -> LedgerEvent`
  records one decision as a new ledger event and updates the current state. The receipt
  is `consent.receipts.receipt_for_event(event)`; its id is `str(event.id)`.
  Used by the account pages (`web_form`), the OIDC consent screen (`oidc_consent`), the
  cookie widget API (`cookie_widget`, with `browser_id` for visitors without an account),
  partner/DPO APIs (`api`) and staff (`staff_on_behalf`, `acting_user=` the staff member).
- `consent_record_many(*, decisions, collection_method, user=None, browser_id=None, ...)
  -> list[LedgerEvent]` — several decisions of one subject (one per purpose) in one
  transaction and one ledger write, all or nothing: the cookie widget's choices.
- `resident_decision_record(*, user, purpose_code, grant) -> LedgerEvent | None` — Mon compte ›
  Consentements: one click grants (`given`/`renewed`) or withdraws (`withdrawn`) one of the
  metropolis' own purposes; None when nothing changes.
- `purpose_for_client(*, client, key, fields) -> Purpose` — the purpose of one partner
  client under the caller's `key` (get-or-create); identity.oidc keeps there the purpose
  of sharing a set of claims (identity.oidc.sharing.purpose_for_client_scopes).
- `purpose_create(*, code, ...) -> Purpose` — add a purpose to the catalogue (DPO console).
- `notice_publish(*, purpose, text_fr, text_en, material, acting_user=None) -> PrivacyNotice`
  — a new version; `material=True` puts current consents into renewal-required state.
- `browser_subject_register(*, browser_id) -> str | None` — a new browser subject and its
  secret (returned once), or None when the browser is already known.
- `subject_link_browser(*, browser_id, browser_secret, user) -> list[LedgerEvent]` — attach
  an anonymous browser's choices to the account, only with the browser's secret.
- `subject_erase(*, user, acting_user=None) -> ErasureReport` — crypto-shredding.
- `consent_expire_lapsed(*, now=None, limit=500) -> int` — optional cron job writing
  `expired` events for the record (the gate never needs it).
- `tree_head_sign() -> TreeHead` — a signed tree head over the current ledger (the pending
  events integrated first).
- `ledger_integrate(*, limit) -> Integration` — the sequencer's step (one batch, one signed tree head).

Every write that appends (consent_record, subject_link_browser, consent_expire_lapsed) raises
`LedgerTampered` with nothing written when the ledger head row is malformed (checked in
Python on the locked row, `consent.ledger.head_check`) or, for an attachment, when an event it
reads is; callers answer it (consent screen page, 503 problem) and call
`ledger_tampered_audit`. Erasure appends nothing and is not stopped by it.

Semantics decided here (docs/ledger.md):
- Granting events are `given` and `renewed`; everything else means "not granted".
- A consent counts only while `valid_until` is in the future (no job needed) and while it
  is not flagged `renewal_required` (a material notice was published after it).
- `renewed` needs a previous grant (`given`/`renewed`, possibly expired or flagged).
- `expired` is only written by `consent_expire_lapsed`; `revoked` only by staff or a partner.
- A refusal is remembered for the purpose's consent lifetime (CNIL: 6 months for cookies):
  its `valid_until` tells the widget when it may ask again.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from consent import crypto, ledger, purpose_data
from consent.models import (
    GRANTING_EVENTS,
    ActorType,
    CollectionMethod,
    ConsentState,
    EventType,
    LedgerEvent,
    PrivacyNotice,
    Purpose,
    Subject,
    SubjectKind,
    TreeHead,
)
from consent.prepared import fetch_in_turn, prepared_fetch
from consent.rights import ErasureReport
from identity.audit import audit_log
from identity.models import User

log = logging.getLogger(__name__)
LedgerTampered = ledger.LedgerTampered
MAX_CONSENT_LIFETIME = timedelta(days=395)  # 13 months
_BROWSER_ID = re.compile(r"^[A-Za-z0-9_-]{22,128}$")
PURPOSE_CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._:+-]{1,254}$")


class ConsentError(ValueError):
    """Bad input to a consent service. Nothing was written. The message is safe to show."""


class UnknownPurpose(ConsentError):
    pass


def ledger_tampered_audit(*, exc: LedgerTampered, operation: str) -> None:
    """Record that a write met a malformed or altered ledger (issue 9, finding 10's class) and
    wrote nothing: the operation and the ledger positions only, no account, subject or value.
    Called by the views, outside the write's rolled-back transaction."""
    log.warning("ledger tampering stopped %s at positions %s: nothing written", operation, exc.positions)
    audit_log(event="consent.ledger_tampered", data={"operation": operation, "positions": exc.positions})


# --- Helpers ---------------------------------------------------------------------------------


def notice_content_sha256(text_fr: str, text_en: str) -> str:
    """SHA-256 (hex) of the canonical JSON {"en": text_en, "fr": text_fr} in UTF-8."""
    canonical = json.dumps(
        {"en": text_en, "fr": text_fr}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def browser_id_hash(browser_id: str) -> str:
    """The stored form of a browser id (the raw id only lives in the visitor's cookie)."""
    if not isinstance(browser_id, str) or not _BROWSER_ID.match(browser_id):
        raise ConsentError(
            "browser_id must be 22 to 128 URL-safe characters (e.g. secrets.token_urlsafe(32))"
        )
    return hashlib.sha256(b"consent-browser:" + browser_id.encode()).hexdigest()


def browser_secret_hash(browser_secret: str) -> str:
    """The stored form of a browser's secret (the secret itself only lives in the widget)."""
    return hashlib.sha256(b"consent-browser-secret:" + browser_secret.encode()).hexdigest()


def _new_subject(
    *, kind: str, user: User | None = None, browser_hash: str | None = None, secret_hash: str | None = None
) -> Subject:
    subject = Subject(
        kind=kind, user=user, browser_id_hash=browser_hash, browser_secret_hash=secret_hash or ""
    )
    subject.wrapped_key = crypto.new_wrapped_key(subject.id)
    # What save(force_insert=True) does (Subject has no pre_save field nor signal receiver),
    # as one plain INSERT: no query to compile on the append path.
    sql, fields = _subject_insert_sql()
    params = [field.get_db_prep_save(getattr(subject, field.attname), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    subject._state.adding, subject._state.db = False, connection.alias
    return subject


@functools.cache
def _subject_insert_sql() -> tuple[str, tuple[Any, ...]]:
    fields = tuple(Subject._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO consent_subject ({columns}) VALUES ({marks})", fields  # noqa: S608


def _account_subject(user: User) -> Subject:
    subject = Subject.objects.filter(user=user, kind=SubjectKind.ACCOUNT).first()
    return subject or _new_subject(kind=SubjectKind.ACCOUNT, user=user)


def _browser_subject(browser_hash: str) -> Subject:
    subject = Subject.objects.filter(browser_id_hash=browser_hash).first()
    return subject or _new_subject(kind=SubjectKind.BROWSER, browser_hash=browser_hash)


# An append's one read after its locks (consent_record): the purpose and its partner's client_id,
# the notice in force for it, the subject and its current state for it. Portable SQL (PostgreSQL
# and SQLite), read with a plain cursor and turned into model instances here: no query to
# compile, no converter.
_CONTEXT_SQL = """
SELECT p.id, p.code, p.client_id, p.consent_lifetime_days, p.requires_consent, p.is_active,
       COALESCE(c.client_id, ''),
       n.id, n.version, n.content_sha256, s.id, s.kind, s.user_id, s.browser_id_hash, s.wrapped_key,
       st.id, st.status, st.valid_until, st.renewal_required, st.event_id
FROM consent_purpose p
LEFT JOIN {{client}} c ON c.id = p.client_id
LEFT JOIN consent_privacynotice n ON n.id = (
    SELECT n2.id FROM consent_privacynotice n2 WHERE n2.purpose_id = p.id OR n2.purpose_id IS NULL
    ORDER BY n2.published_at DESC, n2.id DESC LIMIT 1
)
LEFT JOIN consent_subject s ON {subject}
LEFT JOIN consent_consentstate st ON st.subject_id = s.id AND st.purpose_id = p.id
WHERE p.code = %s
"""
_CONTEXT_ACCOUNT_SQL = _CONTEXT_SQL.format(subject="s.user_id = %s AND s.kind = 'account'")
_CONTEXT_BROWSER_SQL = _CONTEXT_SQL.format(subject="s.browser_id_hash = %s")
# PostgreSQL: the same query in the PL/pgSQL function of migration consent 0012 (an account's
# subject, or a browser's when the user is NULL), whose plan PostgreSQL keeps per connection
# whatever the pooler: parsing and planning this join at each append cost about three times
# running it (issue 14). tests/consent/test_append_path.py compares the two.
_CONTEXT_CALL_SQL = "SELECT * FROM consent_decision_context(%s::uuid, %s::text, %s::text)"


def _db_uuid(value: Any) -> uuid.UUID:
    """A uuid column as read by a plain cursor (PostgreSQL: a UUID; SQLite: 32 hex digits)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _db_datetime(value: Any) -> datetime | None:
    """A timestamp column as read by a plain cursor (SQLite: Django's text form, naive UTC)."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC)


# `model(**values)` without `Model.__init__` while no pre_init/post_init receiver listens
# (ledger.model_instance: the append's head is built the same way).
_instance = ledger.model_instance


@functools.cache
def _defaults(model: Any) -> dict[str, Any]:
    """The default of every concrete field without a callable default (what `__init__` sets)."""
    return {
        field.attname: field.get_default()
        for field in model._meta.concrete_fields
        if not (field.has_default() and callable(field.default))
    }


def _loaded(instance: Any) -> Any:
    """A model instance built from some of its columns: marked as stored, and as partial (an
    event refers to it by id only, so that its other fields are read if ever used)."""
    instance._state.adding = False
    instance._state.db = connection.alias
    instance._partial = True
    return instance


@functools.cache
def _context_sql(account: bool) -> str:
    sql = _CONTEXT_ACCOUNT_SQL if account else _CONTEXT_BROWSER_SQL
    return sql.replace("{client}", _client_table())


def _decision_context(
    *,
    user: User | None,
    browser_hash: str | None,
    purpose_code: str,
    held: purpose_data.HeldColumns | None = None,
) -> tuple[Purpose, Subject | None, ConsentState | None, PrivacyNotice | None, frozenset[str]]:
    """The active purpose `purpose_code` (UnknownPurpose otherwise), the subject (None when it
    has no row yet), its current state for the purpose and the notice in force, read once under
    the subject's lock (consent_record); with `held`, in the same statement, the purpose data
    holders' answers: the names of those that hold nothing for the subject."""
    statement = _context_statement(user=user, browser_hash=browser_hash, purpose_code=purpose_code, held=held)
    return _context_answer(purpose_code, prepared_fetch(*statement), held)


def _context_statement(
    *,
    user: User | None,
    browser_hash: str | None,
    purpose_code: str,
    held: purpose_data.HeldColumns | None = None,
) -> tuple[str, list[Any]]:
    """`_decision_context`'s statement (sql, params): consent_record runs it in the round trip
    of the head's (`consent.prepared.fetch_in_turn`) and reads its row with `_context_answer`."""
    user_key = None if user is None else User._meta.pk.get_db_prep_value(user.pk, connection)
    held_sql, held_params = ("", ()) if held is None else (held.sql, held.params)
    if connection.vendor == "postgresql":
        params = [*held_params, user_key, browser_hash, purpose_code]
    else:
        params = [*held_params, user_key if user is not None else browser_hash, purpose_code]
    return _context_held_sql(connection.vendor, user is not None, held_sql), params


def _context_answer(
    purpose_code: str, row: Sequence[Any] | None, held: purpose_data.HeldColumns | None
) -> tuple[Purpose, Subject | None, ConsentState | None, PrivacyNotice | None, frozenset[str]]:
    """`_decision_context`'s answer from its statement's row."""
    if row is None or held is None:
        return (*_context_of_row(purpose_code, row), frozenset())
    answers = row[_CONTEXT_WIDTH:]
    # Only a false answer skips a holder (a NULL, from an expression of the holder's, does not).
    nothing = frozenset(
        name for name, answer in zip(held.names, answers, strict=True) if answer is not None and not answer
    )
    return (*_context_of_row(purpose_code, row[:_CONTEXT_WIDTH]), nothing)


# The context read's own columns (_CONTEXT_SQL, consent_decision_context); the holders' answers follow.
_CONTEXT_WIDTH = 20


@functools.cache
def _context_held_sql(vendor: str, account: bool, held_sql: str) -> str:
    """The context read with the holders' `held` columns (`held_sql`: ", (expr)..."), after
    the context's own: on PostgreSQL around the call of consent_decision_context, elsewhere in
    the portable query's select list (their parameters come first in both)."""
    if vendor == "postgresql":
        if not held_sql:
            return _CONTEXT_CALL_SQL
        return _CONTEXT_CALL_SQL.replace("SELECT *", f"SELECT c.*{held_sql}", 1) + " c"
    sql = _context_sql(account)
    return sql.replace("\nFROM consent_purpose p\n", f"{held_sql}\nFROM consent_purpose p\n", 1)


def _context_of_row(
    purpose_code: str, row: Sequence[Any] | None
) -> tuple[Purpose, Subject | None, ConsentState | None, PrivacyNotice | None]:
    """`_decision_context`'s answer from the context query's row (None: no such purpose)."""
    if row is None:
        raise UnknownPurpose(f"unknown purpose {purpose_code!r}")
    purpose = _purpose_of_row(purpose_code, row[:7])
    notice_id, version, sha256, subject_id, kind, user_id, hashed, wrapped = row[7:15]
    state_id, status, state_until, renewal, event_id = row[15:]
    notice = None
    if notice_id is not None:
        notice = _loaded(
            _instance(PrivacyNotice, {"id": notice_id, "version": version, "content_sha256": sha256})
        )
    if subject_id is None:
        return purpose, None, None, notice
    subject = _loaded(
        _instance(
            Subject,
            {
                "id": _db_uuid(subject_id),
                "kind": kind,
                "user_id": user_id,
                "browser_id_hash": hashed,
                "wrapped_key": None if wrapped is None else bytes(wrapped),
            },
        )
    )
    state = None
    if state_id is not None:
        state = _loaded(
            _instance(
                ConsentState,
                {
                    "id": state_id,
                    "subject_id": subject.id,
                    "purpose_id": purpose.pk,
                    "status": status,
                    "valid_until": _db_datetime(state_until),
                    "renewal_required": bool(renewal),
                    "event_id": _db_uuid(event_id),
                },
            )
        )
    return purpose, subject, state, notice


def current_notice(purpose: Purpose) -> PrivacyNotice | None:
    """The most recently published notice that applies to `purpose` (its own or the global one)."""
    return (
        PrivacyNotice.objects.filter(Q(purpose=purpose) | Q(purpose__isnull=True))
        .order_by("-published_at", "-id")
        .first()
    )


# The purpose's columns an append uses, with its partner's client_id ('' for the metropolis'
# own purposes), in one raw statement: the append path's first read.
_PURPOSE_SQL = (
    "SELECT p.id, p.code, p.client_id, p.consent_lifetime_days, p.requires_consent, p.is_active, "
    "COALESCE(c.client_id, '') FROM consent_purpose p LEFT JOIN {client} c ON c.id = p.client_id "
    "WHERE p.code = %s"
)


@functools.cache
def _client_table() -> str:
    client_model = Purpose._meta.get_field("client").related_model
    assert isinstance(client_model, type)
    return connection.ops.quote_name(client_model._meta.db_table)


@functools.cache
def _purpose_sql() -> str:
    return _PURPOSE_SQL.format(client=_client_table())


def _purpose(code: str) -> Purpose:
    """The active purpose `code`, read in part (`_loaded`: an event refers to it by id), with
    its partner's client_id as `partner_code`; UnknownPurpose otherwise."""
    _purpose_code_check(code)
    with connection.cursor() as cursor:
        cursor.execute(_purpose_sql(), [code])
        row = cursor.fetchone()
    if row is None:
        raise UnknownPurpose(f"unknown purpose {code!r}")
    return _purpose_of_row(code, row)


def _purpose_code_check(code: Any) -> None:
    if not isinstance(code, str) or not code:
        raise UnknownPurpose("a purpose code is required")


def _purpose_of_row(code: str, row: Sequence[Any]) -> Purpose:
    """The purpose from its columns as `_PURPOSE_SQL` reads them; UnknownPurpose when retired."""
    purpose_id, purpose_code, client_id, lifetime, requires_consent, is_active, partner_code = row
    if not is_active:
        raise UnknownPurpose(f"purpose {code!r} is retired")
    purpose = _loaded(
        _instance(
            Purpose,
            {
                "id": purpose_id,
                "code": purpose_code,
                "client_id": client_id,
                "consent_lifetime_days": lifetime,
                "requires_consent": bool(requires_consent),
                "is_active": True,
            },
        )
    )
    purpose.partner_code = partner_code
    return purpose


def _lifetime(purpose: Purpose) -> timedelta:
    if purpose.consent_lifetime_days:
        return min(timedelta(days=purpose.consent_lifetime_days), MAX_CONSENT_LIFETIME)
    return MAX_CONSENT_LIFETIME


# --- Recording decisions ---------------------------------------------------------------------

_PARTNER_EVENTS = {EventType.REQUESTED, EventType.REVOKED}
_RESIDENT_EVENTS = {
    EventType.REQUESTED,
    EventType.GIVEN,
    EventType.REFUSED,
    EventType.WITHDRAWN,
    EventType.RENEWED,
}
_STAFF_EVENTS = {
    EventType.REQUESTED,
    EventType.GIVEN,
    EventType.REFUSED,
    EventType.WITHDRAWN,
    EventType.RENEWED,
    EventType.REVOKED,
}
_TIMED_EVENTS = {EventType.GIVEN, EventType.RENEWED, EventType.REFUSED}


def consent_record(
    *,
    purpose_code: str,
    event_type: str,
    collection_method: str,
    user: User | None = None,
    browser_id: str | None = None,
    acting_user: User | None = None,
    acting_client: Any | None = None,
    collected_for: Any | None = None,
    valid_until: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> LedgerEvent:
    """Append one consent decision to the ledger and update the current state.

    Exactly one of `user` (a resident's account) or `browser_id` (the random id of a
    visitor without an account, cookie widget) names the subject. The acting party is the
    resident unless `acting_user` (a staff member, with `collection_method="staff_on_behalf"`)
    or `acting_client` (a partner client: `requested`/`revoked` of its own purposes) is given.
    `collected_for` names the partner client on whose site the resident decided (cookie
    widget) without making it the actor: it is recorded as the event's partner.
    `valid_until` defaults to now + the purpose's consent lifetime for given/renewed/refused
    and may only shorten it. `details` (free-text evidence, e.g. the reference of a signed
    paper form) are personal data: encrypted with the subject's key, never logged.
    Raises ConsentError (UnknownPurpose for a bad code) and writes nothing on bad input.
    """
    event_type = _event_type_check(event_type, collection_method)
    browser_hash = _subject_check(user, browser_id)
    _arguments_check(
        details=details, valid_until=valid_until, acting_user=acting_user, acting_client=acting_client
    )

    _purpose_code_check(purpose_code)
    # The purpose data holders that can say whether they hold anything for the subject answer
    # in the context read (purpose_data.held_columns): those holding nothing are not called.
    held = None
    if event_type != EventType.REQUESTED:
        held = purpose_data.held_columns(
            purpose_code=purpose_code,
            subject=purpose_data.DataSubject(user_id=user.pk)
            if user is not None
            else purpose_data.DataSubject(browser_hash=browser_hash or ""),
        )

    with transaction.atomic():
        # Writers share the head row (no wait for one another); the decisions of one subject
        # are serialised by a lock on that subject (its current state, a renewal's check), taken
        # in the same statement, after the head's (ledger.writer_head).
        # After both locks: the purpose, the subject, its current state and the notice in force,
        # one read (a statement of its own: it sees what the subject's previous decision
        # committed). Both statements go in one round trip on PostgreSQL (fetch_in_turn), with
        # the transaction's BEGIN. Any check below that fails rolls the transaction back:
        # nothing written.
        subject_lock = _subject_lock_key(user=user, browser_hash=browser_hash)
        context_statement = _context_statement(
            user=user, browser_hash=browser_hash, purpose_code=purpose_code, held=held
        )
        head_row, context_row = fetch_in_turn(
            [ledger.writer_head_statement(subject_lock=subject_lock), context_statement]
        )
        head = ledger.head_of_row(head_row)
        if head is None:  # no head row (a flushed test database): created, then both again
            head = ledger.writer_head(subject_lock=subject_lock)
            context_row = prepared_fetch(*context_statement)
        now = timezone.now()
        purpose, subject, state, notice, nothing_held = _context_answer(purpose_code, context_row, held)
        partner_client_id, actor_type, actor_id, until = _decision_checks(
            purpose=purpose,
            state=state,
            notice=notice,
            event_type=event_type,
            collection_method=collection_method,
            user=user,
            acting_user=acting_user,
            acting_client=acting_client,
            collected_for=collected_for,
            details=details,
            valid_until=valid_until,
            now=now,
        )
        if subject is None:
            subject = _new_subject(
                kind=SubjectKind.ACCOUNT if user is not None else SubjectKind.BROWSER,
                user=user,
                browser_hash=browser_hash,
            )
        if actor_type == ActorType.RESIDENT:
            actor_id = str(subject.id)
        details = _purpose_data_erase(subject, purpose, event_type, state, now, details, nothing_held)
        event = _new_event(
            subject=subject,
            purpose=purpose,
            event_type=event_type,
            notice=notice,
            collection_method=collection_method,
            actor_type=actor_type,
            actor_id=actor_id,
            partner_client_id=partner_client_id,
            occurred_at=now,
            valid_until=until,
            details=details,
        )
        # The append last, with the current state's upsert (one statement on PostgreSQL; the
        # state's reference to the event is checked at the commit): the leaf-index counter it
        # takes stays locked until the commit.
        ledger.append(head, event, with_state=True)
        _state_update(state, event)
        if actor_type == ActorType.STAFF:
            audit_log(
                event="consent.recorded_on_behalf",
                acting_user=acting_user,
                subject_user=user,
                data={"ledger_event": str(event.id), "seq": event.seq, "type": event.event_type},
            )
    return event


def consent_record_many(
    *,
    decisions: Sequence[tuple[str, str]],
    collection_method: str,
    user: User | None = None,
    browser_id: str | None = None,
    acting_user: User | None = None,
    acting_client: Any | None = None,
    collected_for: Any | None = None,
    details: dict[str, Any] | None = None,
) -> list[LedgerEvent]:
    """Append several decisions of one subject at once, all or nothing: `decisions` is a list of
    (purpose_code, event_type), one per purpose (ConsentError for a purpose named twice), in
    the order their events take in the ledger. The other arguments are consent_record's and
    apply to every decision (`details` is encrypted once per event, under the event's id).

    The events and states are those consent_record would write for each decision in turn, at
    the same instant (tests/consent/test_append_many.py compares them column by column, leaf
    hash by leaf hash), with one transaction, one head read and subject lock, one context read,
    one counter update and one write of the events and states (`ledger.append_many`). Any check
    that fails for one decision raises with nothing written (no gap in the leaf indexes).
    """
    checked: list[tuple[str, EventType]] = []
    for purpose_code, event_type in decisions:
        _purpose_code_check(purpose_code)
        checked.append((purpose_code, _event_type_check(event_type, collection_method)))
    if len({code for code, _event_type in checked}) != len(checked):
        raise ConsentError("each purpose may appear once in a batch of decisions")
    browser_hash = _subject_check(user, browser_id)
    _arguments_check(details=details, valid_until=None, acting_user=acting_user, acting_client=acting_client)
    if not checked:
        return []

    with transaction.atomic():
        head = ledger.writer_head(subject_lock=_subject_lock_key(user=user, browser_hash=browser_hash))
        now = timezone.now()
        contexts = _decision_contexts(
            user=user, browser_hash=browser_hash, purpose_codes=[code for code, _event_type in checked]
        )
        planned = []
        for (_code, event_type), (purpose, _subject, state, notice) in zip(checked, contexts, strict=True):
            partner_client_id, actor_type, actor_id, until = _decision_checks(
                purpose=purpose,
                state=state,
                notice=notice,
                event_type=event_type,
                collection_method=collection_method,
                user=user,
                acting_user=acting_user,
                acting_client=acting_client,
                collected_for=collected_for,
                details=details,
                valid_until=None,
                now=now,
            )
            planned.append(
                (purpose, state, notice, event_type, partner_client_id, actor_type, actor_id, until)
            )
        subject = contexts[0][1]
        if subject is None:
            subject = _new_subject(
                kind=SubjectKind.ACCOUNT if user is not None else SubjectKind.BROWSER,
                user=user,
                browser_hash=browser_hash,
            )
        # The data of every purpose the batch ends, erased with one call per holder.
        all_details = _purpose_data_erase_many(
            subject,
            [(purpose, event_type, state) for purpose, state, _n, event_type, *_rest in planned],
            now,
            details,
        )
        keys: dict[str, bytes] = {}  # the subject's data key, unwrapped once for the batch
        events = []
        for plan, event_details in zip(planned, all_details, strict=True):
            purpose, _state, notice, event_type, partner_client_id, actor_type, actor_id, until = plan
            event = _new_event(
                subject=subject,
                purpose=purpose,
                event_type=event_type,
                notice=notice,
                collection_method=collection_method,
                actor_type=actor_type,
                actor_id=str(subject.id) if actor_type == ActorType.RESIDENT else actor_id,
                partner_client_id=partner_client_id,
                occurred_at=now,
                valid_until=until,
                details=event_details,
                data_keys=keys,
            )
            events.append(event)
        ledger.append_many(head, events, with_state=True)
        for (_purpose, state, *_rest), event in zip(planned, events, strict=True):
            _state_update(state, event)
            if event.actor_type == ActorType.STAFF:
                audit_log(
                    event="consent.recorded_on_behalf",
                    acting_user=acting_user,
                    subject_user=user,
                    data={"ledger_event": str(event.id), "seq": event.seq, "type": event.event_type},
                )
    return events


# PostgreSQL: consent_decision_context (migration consent 0012) for each code, in one statement.
_CONTEXTS_CALL_SQL = (
    "SELECT w.k, d.* FROM unnest(%s::text[]) WITH ORDINALITY AS w(code, k) "
    "CROSS JOIN LATERAL consent_decision_context(%s::uuid, %s::text, w.code) AS d ORDER BY w.k"
)


def _decision_contexts(
    *, user: User | None, browser_hash: str | None, purpose_codes: list[str]
) -> list[tuple[Purpose, Subject | None, ConsentState | None, PrivacyNotice | None]]:
    """`_decision_context` of each code, in order (UnknownPurpose for the first unknown one):
    one statement on PostgreSQL, one per code elsewhere."""
    if connection.vendor != "postgresql":
        return [
            _decision_context(user=user, browser_hash=browser_hash, purpose_code=code)[:4]
            for code in purpose_codes
        ]
    user_key = None if user is None else User._meta.pk.get_db_prep_value(user.pk, connection)
    found = prepared_fetch(_CONTEXTS_CALL_SQL, [purpose_codes, user_key, browser_hash], all_rows=True)
    rows = {row[0]: row[1:] for row in found}
    return [_context_of_row(code, rows.get(k)) for k, code in enumerate(purpose_codes, start=1)]


def _decision_checks(
    *,
    purpose: Purpose,
    state: ConsentState | None,
    notice: PrivacyNotice | None,
    event_type: EventType,
    collection_method: str,
    user: User | None,
    acting_user: User | None,
    acting_client: Any | None,
    collected_for: Any | None,
    details: dict[str, Any] | None,
    valid_until: datetime | None,
    now: datetime,
) -> tuple[str, str, str, datetime | None]:
    """consent_record's checks of one decision once its context is read under the locks (who
    acts, a renewal's grant, the notice, the validity): (partner client_id, actor type, actor
    id, valid_until). Raises ConsentError; the caller's transaction then rolls back."""
    partner_client_id, actor_type, actor_id = _actor_check(
        purpose=purpose,
        event_type=event_type,
        collection_method=collection_method,
        user=user,
        acting_user=acting_user,
        acting_client=acting_client,
        collected_for=collected_for,
        details=details,
    )
    if valid_until is not None and event_type not in _TIMED_EVENTS:
        raise ConsentError(f"valid_until does not apply to {event_type.value!r}")
    if event_type == EventType.RENEWED and (
        state is None or state.status not in (*GRANTING_EVENTS, EventType.EXPIRED)
    ):
        raise ConsentError("nothing to renew: record 'given' instead")
    if event_type in GRANTING_EVENTS and notice is None:
        raise ConsentError("no privacy notice is published for this purpose: consent cannot be informed")
    until = _valid_until(event_type, purpose, now=now, asked=valid_until)
    return partner_client_id, actor_type, actor_id, until


def _actor_check(
    *,
    purpose: Purpose,
    event_type: EventType,
    collection_method: str,
    user: User | None,
    acting_user: User | None,
    acting_client: Any | None,
    collected_for: Any | None,
    details: dict[str, Any] | None,
) -> tuple[str, str, str]:
    """(the event's partner client_id, actor type, actor id: "" for the resident, filled with the
    pseudonym by the caller) after consent_record's checks of who acts on this purpose."""
    partner_client_id: str = getattr(purpose, "partner_code", "")
    if collected_for is not None:
        if purpose.client_id and purpose.client_id != collected_for.pk:
            raise ConsentError("this purpose belongs to another partner")
        partner_client_id = collected_for.client_id
    if acting_client is not None:
        _partner_check(event_type, collection_method, purpose, acting_client)
        return partner_client_id or acting_client.client_id, ActorType.PARTNER, acting_client.client_id
    if acting_user is not None and acting_user != user:
        _staff_check(event_type, collection_method, acting_user, details)
        return partner_client_id, ActorType.STAFF, str(acting_user.pk)
    _resident_check(event_type, collection_method)
    return partner_client_id, ActorType.RESIDENT, ""


class NotResidentDecidable(ConsentError):
    """The purpose is not decided from Mon compte › Consentements: a partner's sharing purpose
    (withdrawn from "Services connectés") or a purpose that needs no consent."""


def resident_decision_record(*, user: User, purpose_code: str, grant: bool) -> LedgerEvent | None:
    """Mon compte › Consentements: the resident grants or withdraws one of the metropolis' own
    purposes, one click each (`web_form`, the resident acting, under the current notice).

    Granting records `given`, or `renewed` when a grant came before (lapsed, or flagged for
    renewal by a material notice); withdrawing records `withdrawn`. Returns None, writing
    nothing, when the decision is already the current one (a second click, two tabs).
    Raises `NotResidentDecidable`, `ConsentError` or `LedgerTampered` with nothing written.
    """
    purpose = _purpose(purpose_code)
    if purpose.client_id is not None or not purpose.requires_consent:
        raise NotResidentDecidable(f"purpose {purpose_code!r} is not decided from the consents page")
    with transaction.atomic():
        ledger.writer_head(subject_lock=_subject_lock_key(user=user, browser_hash=None))
        now = timezone.now()
        state = ConsentState.objects.filter(
            subject__user_id=user.pk, subject__kind=SubjectKind.ACCOUNT, purpose=purpose
        ).first()
        granted = state_grants(state, now)
        if bool(grant) == granted:
            return None
        if not grant:
            event_type = EventType.WITHDRAWN
        elif state is not None and state.status in (*GRANTING_EVENTS, EventType.EXPIRED):
            event_type = EventType.RENEWED
        else:
            event_type = EventType.GIVEN
        return consent_record(
            purpose_code=purpose.code,
            event_type=event_type,
            collection_method=CollectionMethod.WEB_FORM,
            user=user,
        )


def _subject_lock_key(*, user: User | None, browser_hash: str | None) -> int | None:
    """The key of the PostgreSQL advisory lock that serialises the decisions of one subject (an
    account, or a browser), keyed by the subject (taken before the subject row may be created);
    None on SQLite, which runs one writing transaction at a time: nothing to lock."""
    if connection.vendor != "postgresql":
        return None
    name = f"user:{user.pk}" if user is not None else f"browser:{browser_hash}"
    return int.from_bytes(hashlib.sha256(f"consent-subject:{name}".encode()).digest()[:8], "big", signed=True)


def _subject_lock(*, user: User | None, browser_hash: str | None) -> None:
    """Take `_subject_lock_key`'s lock until the end of the transaction (an append takes it
    with the head row's, `ledger.writer_head(subject_lock=...)`)."""
    key = _subject_lock_key(user=user, browser_hash=browser_hash)
    if key is None:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


# consent_record's checks, in the order it makes them; each raises ConsentError.


# The choices' values, computed once (`Choices.values` builds its list at every access).
_EVENT_TYPE_VALUES = frozenset(EventType.values)
_METHOD_VALUES = frozenset(CollectionMethod.values)


def _event_type_check(event_type: str, collection_method: str) -> EventType:
    if not isinstance(event_type, str) or event_type not in _EVENT_TYPE_VALUES:
        raise ConsentError(f"unknown event type {event_type!r} (choose from {', '.join(EventType.values)})")
    checked = EventType(event_type)
    if checked == EventType.EXPIRED:
        raise ConsentError("expiry is not recorded by hand: it is automatic at valid_until")
    if (
        not isinstance(collection_method, str)
        or collection_method not in _METHOD_VALUES
        or collection_method == CollectionMethod.SYSTEM
    ):
        allowed = [m for m in CollectionMethod.values if m != CollectionMethod.SYSTEM]
        raise ConsentError(
            f"unknown collection method {collection_method!r} (choose from {', '.join(allowed)})"
        )
    return checked


def _subject_check(user: User | None, browser_id: str | None) -> str | None:
    """The browser id's hash when the subject is a browser, None when it is an account."""
    if (user is None) == (browser_id is None):
        raise ConsentError("give exactly one of user or browser_id")
    if user is not None and not isinstance(user, User):
        raise ConsentError("user must be a resident account")
    if user is not None and user.pk is None:
        raise ConsentError("user is not saved")
    return browser_id_hash(browser_id) if browser_id is not None else None


def _arguments_check(
    *,
    details: dict[str, Any] | None,
    valid_until: datetime | None,
    acting_user: User | None,
    acting_client: Any | None,
) -> None:
    if details is not None and (not isinstance(details, dict) or not details):
        raise ConsentError("details must be a non-empty JSON object or None")
    if details is not None:
        try:
            json.dumps(details)
        except (TypeError, ValueError) as exc:
            raise ConsentError("details must be JSON-serialisable") from exc
    if valid_until is not None and (not isinstance(valid_until, datetime) or timezone.is_naive(valid_until)):
        raise ConsentError("valid_until must be a timezone-aware datetime")
    if acting_user is not None and acting_client is not None:
        raise ConsentError("give at most one of acting_user and acting_client")


def _partner_check(
    event_type: EventType, collection_method: str, purpose: Purpose, acting_client: Any
) -> None:
    if event_type not in _PARTNER_EVENTS:
        raise ConsentError("a partner may only record 'requested' or 'revoked'")
    if collection_method not in (CollectionMethod.API, CollectionMethod.OIDC_CONSENT):
        raise ConsentError("a partner acts through the API or the OIDC consent screen")
    if purpose.client_id and purpose.client_id != acting_client.pk:
        raise ConsentError("a partner may only act on its own purposes")


def _staff_check(
    event_type: EventType, collection_method: str, acting_user: User, details: dict[str, Any] | None
) -> None:
    if not getattr(acting_user, "is_staff", False) or not acting_user.is_active:
        raise ConsentError("only active staff may act on a resident's behalf")
    if collection_method != CollectionMethod.STAFF_ON_BEHALF:
        raise ConsentError("staff decisions use the collection method 'staff_on_behalf'")
    if event_type not in _STAFF_EVENTS:
        raise ConsentError(f"staff may not record {event_type.value!r}")
    if event_type in GRANTING_EVENTS and not details:
        raise ConsentError("a consent given through staff needs its evidence in details")


def _resident_check(event_type: EventType, collection_method: str) -> None:
    if collection_method == CollectionMethod.STAFF_ON_BEHALF:
        raise ConsentError("'staff_on_behalf' needs the staff member as acting_user")
    if event_type not in _RESIDENT_EVENTS:
        raise ConsentError(f"a resident does not record {event_type.value!r} (use 'withdrawn')")


def _valid_until(
    event_type: EventType, purpose: Purpose, *, now: datetime, asked: datetime | None
) -> datetime | None:
    """The event's end of validity: the one asked for, or the purpose's lifetime from now."""
    if event_type not in _TIMED_EVENTS:
        return None
    longest = now + _lifetime(purpose)
    until = longest if asked is None else asked
    if until <= now or until > longest:
        raise ConsentError("valid_until must be in the future and within the purpose's consent lifetime")
    return until


def state_grants(state: ConsentState | None, now: datetime) -> bool:
    """Whether a current-state row grants its purpose at `now` (the gate's rule)."""
    return (
        state is not None
        and state.status in GRANTING_EVENTS
        and not state.renewal_required
        and (state.valid_until is None or state.valid_until > now)
    )


def data_subject(subject: Subject) -> purpose_data.DataSubject:
    if subject.kind == SubjectKind.BROWSER:
        return purpose_data.DataSubject(browser_hash=subject.browser_id_hash or "")
    return purpose_data.DataSubject(user_id=subject.user_id)


def _purpose_data_erase(
    subject: Subject,
    purpose: Purpose,
    event_type: EventType,
    state: ConsentState | None,
    now: datetime,
    details: dict[str, Any] | None,
    nothing_held: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    """Erase the data held under `purpose` when this event ends its grant, or when it grants
    again after no grant (starting empty); what went is added to the event's details
    (consent.purpose_data). `requested` changes nothing. `nothing_held`: the holders that said,
    in this transaction, that they hold nothing for the subject (not called)."""
    if not _erases(subject, event_type, state, now):
        return details
    erased = purpose_data.erase_for(
        purpose_code=purpose.code, subject=data_subject(subject), nothing_held=nothing_held
    )
    if not erased:
        return details
    return {**(details or {}), "erased": erased}


def _erases(subject: Subject, event_type: EventType, state: ConsentState | None, now: datetime) -> bool:
    """Whether this event erases its purpose's data (`_purpose_data_erase`)."""
    if event_type == EventType.REQUESTED or (event_type in GRANTING_EVENTS and state_grants(state, now)):
        return False
    return not (subject.kind == SubjectKind.ACCOUNT and subject.user_id is None)


def _purpose_data_erase_many(
    subject: Subject,
    planned: Sequence[tuple[Purpose, EventType, ConsentState | None]],
    now: datetime,
    details: dict[str, Any] | None,
) -> list[dict[str, Any] | None]:
    """`_purpose_data_erase` of each (purpose, event type, state) of one subject's batch, with
    one call per holder for all the purposes the batch ends (purpose_data.erase_for_many):
    each event's details, as the single decisions would record them."""
    codes = [
        purpose.code for purpose, event_type, state in planned if _erases(subject, event_type, state, now)
    ]
    erased = purpose_data.erase_for_many(purpose_codes=codes, subject=data_subject(subject)) if codes else {}
    return [
        {**(details or {}), "erased": erased[purpose.code]} if purpose.code in erased else details
        for purpose, _event_type, _state in planned
    ]


def _new_event(
    *,
    subject: Subject,
    purpose: Purpose,
    event_type: str,
    notice: PrivacyNotice | None,
    collection_method: str,
    actor_type: str,
    actor_id: str,
    partner_client_id: str,
    occurred_at: datetime,
    valid_until: datetime | None,
    details: dict[str, Any] | None,
    linked_from: Any = None,
    data_keys: dict[str, bytes] | None = None,
) -> LedgerEvent:
    """The event of one decision (not saved). `data_keys`: a batch's cache of the subject's
    unwrapped data key (keyed "key"), so that a batch unwraps it once."""
    event = _instance(
        LedgerEvent,
        {
            **_defaults(LedgerEvent),
            "id": ledger.new_event_id(),
            "event_type": event_type,
            "subject_id": subject.pk,
            "purpose_id": purpose.pk,
            "purpose_code": purpose.code,
            "notice_id": notice.pk if notice else None,
            "notice_version": notice.version if notice else None,
            "notice_sha256": notice.content_sha256 if notice else "",
            "collection_method": collection_method,
            "actor_type": actor_type,
            "actor_id": actor_id,
            "partner_client_id": partner_client_id,
            "occurred_at": occurred_at,
            "valid_until": valid_until,
            "linked_from": linked_from,
        },
    )
    if details:
        data_key = None if data_keys is None else data_keys.get("key")
        if data_key is None:
            try:
                data_key = crypto.unwrap_key(subject.wrapped_key, subject.id)
            except crypto.KeyDestroyed as exc:
                raise ConsentError("this subject was erased: no details can be recorded") from exc
            if data_keys is not None:
                data_keys["key"] = data_key
        event.details_ciphertext = crypto.encrypt_details(
            data_key, details, event_id=event.id, subject_id=subject.id
        )
    # The event keeps the instances it was given unless they were read in part (_loaded).
    for name, related in (("subject", subject), ("purpose", purpose), ("notice", notice)):
        if related is not None and not getattr(related, "_partial", False):
            setattr(event, name, related)
    return event


# The current state of (subject, purpose) after an event: one upsert on its unique pair
# (ledger.STATE_UPSERT_SQL: on PostgreSQL the append's function writes the same upsert).
_STATE_UPSERT_SQL = ledger.STATE_UPSERT_SQL


def _state_write(*, subject: Subject, purpose: Purpose, event: LedgerEvent) -> tuple[str, list[Any]]:
    """The statement that makes `event` the current state of (subject, purpose): one INSERT ...
    ON CONFLICT (a new decision is taken under the current notice, so any pending renewal is
    settled). The event may be inserted after it or in the same statement (the reference is
    checked at the commit: deferred foreign keys on PostgreSQL and SQLite)."""
    fields = _state_fields()
    values = (subject.pk, purpose.pk, event.event_type, event.id, event.valid_until, False, event.occurred_at)
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
    return _STATE_UPSERT_SQL, params


_STATE_COLUMNS = (
    "subject_id",
    "purpose_id",
    "status",
    "event_id",
    "valid_until",
    "renewal_required",
    "updated_at",
)


@functools.cache
def _state_fields() -> tuple[Any, ...]:
    fields = {field.attname: field for field in ConsentState._meta.concrete_fields}
    return tuple(fields[name] for name in _STATE_COLUMNS)


def _state_update(state: ConsentState | None, event: LedgerEvent) -> None:
    """The instance read before the write, as `_state_write` left its row."""
    if state is not None:
        state.status, state.event_id, state.valid_until = event.event_type, event.id, event.valid_until
        state.renewal_required, state.updated_at = False, event.occurred_at


def _state_set(*, subject: Subject, purpose: Purpose, event: LedgerEvent, state: ConsentState | None) -> None:
    """`_state_write` as a statement of its own (the appends that lock the head exclusively)."""
    with connection.cursor() as cursor:
        cursor.execute(*_state_write(subject=subject, purpose=purpose, event=event))
    _state_update(state, event)


def consent_expire_lapsed(*, now: datetime | None = None, limit: int = 500) -> int:
    """Write an `expired` event for up to `limit` grants whose validity has lapsed.

    Purely for the record (DPO statistics, W3C DPV ConsentExpired): the gate already stops
    counting a consent at its `valid_until` whether or not this has run. Returns the count.
    """
    now = now or timezone.now()
    with transaction.atomic():
        head = ledger.lock_head()
        lapsed = (
            ConsentState.objects.filter(status__in=GRANTING_EVENTS, valid_until__lte=now)
            .select_related("subject", "purpose", "purpose__client")
            .order_by("valid_until")[:limit]
        )
        states = list(lapsed)
        events = []
        for state in states:
            event = _new_event(
                subject=state.subject,
                purpose=state.purpose,
                event_type=EventType.EXPIRED,
                notice=current_notice(state.purpose),
                collection_method=CollectionMethod.SYSTEM,
                actor_type=ActorType.SYSTEM,
                actor_id="",
                partner_client_id=state.purpose.client.client_id if state.purpose.client is not None else "",
                occurred_at=timezone.now(),
                valid_until=None,
                details=_purpose_data_erase(
                    state.subject, state.purpose, EventType.EXPIRED, state, now, None
                ),
            )
            events.append(event)
        # One write for the whole batch (one counter update, the events and their states):
        # the head is held exclusively, so no other append runs meanwhile.
        ledger.append_many(head, events, with_state=True)
        for state, event in zip(states, events, strict=True):
            _state_update(state, event)
        written = len(events)
    return written


# --- Browser subjects ------------------------------------------------------------------------


class BrowserProofError(ConsentError):
    """The browser's secret is missing or wrong (or the browser has none). Nothing was written."""


def browser_subject_register(*, browser_id: str) -> str | None:
    """Register a browser met for the first time: returns its new secret, or None if known.

    The secret is the only proof that a later request comes from the widget that registered
    the browser (docs/partners.md): it is returned once and only its hash is kept.
    """
    browser_hash = browser_id_hash(browser_id)
    if Subject.objects.filter(browser_id_hash=browser_hash).exists():
        return None
    secret = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            _new_subject(
                kind=SubjectKind.BROWSER, browser_hash=browser_hash, secret_hash=browser_secret_hash(secret)
            )
    except IntegrityError:
        return None  # registered concurrently by another request: that one holds the secret
    return secret


def browser_secret_check(*, browser_id: str, browser_secret: Any) -> bool | None:
    """Whether `browser_secret` is this browser's; None when the browser has no secret
    (unknown, or registered before secrets existed)."""
    subject = (
        Subject.objects.filter(browser_id_hash=browser_id_hash(browser_id), kind=SubjectKind.BROWSER)
        .values_list("browser_secret_hash", flat=True)
        .first()
    )
    if not subject:
        return None
    if not isinstance(browser_secret, str) or not browser_secret or len(browser_secret) > 128:
        return False
    return hmac.compare_digest(subject, browser_secret_hash(browser_secret))


def browser_subject_lock(*, browser_hash: str) -> Any:
    """In the caller's transaction, lock this browser's subject row (if any) and return the id
    of the account it is attached to, or None. A write about the browser's data that must not
    cross an attachment (subject_link_browser updates the same row) takes this lock first."""
    return (
        Subject.objects.select_for_update()
        .filter(browser_id_hash=browser_hash, kind=SubjectKind.BROWSER)
        .values_list("user_id", flat=True)
        .first()
    )


def subject_link_browser(*, browser_id: str, browser_secret: Any, user: User) -> list[LedgerEvent]:
    """Attach an anonymous browser's consent history to `user`'s account.

    Only with the browser's secret (`BrowserProofError` otherwise): the id alone is no proof
    that the resident's browser made these choices (issue 9, finding 3). Callers make sure
    the request also comes from the resident (their session, or a link ticket issued at the
    end of their own authorization: consent.api.cookie).
    The browser's events stay where they are (the ledger never changes); for each purpose
    where the browser's current decision is more recent than the account's, a copy is
    appended under the account's pseudonym with `linked_from` = the original event id,
    the notice the visitor actually saw and the original `valid_until` (never extended).
    Lapsed or renewal-required grants are not copied. The browser subject is then linked
    to the account (so erasure of the account shreds it too). A browser already linked to
    another account (shared device) is left alone and nothing is copied.
    Returns the events appended (possibly none).
    """
    browser_hash = browser_id_hash(browser_id)
    if not isinstance(user, User) or user.pk is None:
        raise ConsentError("user must be a saved resident account")
    if browser_secret_check(browser_id=browser_id, browser_secret=browser_secret) is not True:
        raise BrowserProofError("this browser's secret is required to attach its choices")
    appended: list[LedgerEvent] = []
    with transaction.atomic():
        head = ledger.lock_head()
        browser = Subject.objects.filter(browser_id_hash=browser_hash, kind=SubjectKind.BROWSER).first()
        if browser is None or (browser.user_id is not None and browser.user_id != user.pk):
            return []
        # The events read below (current decisions, earlier copies) are read through the ORM:
        # check their stored rows first, so that an altered one is neither copied nor a 500.
        _events_check(LedgerEvent.objects.filter(Q(subject=browser) | Q(subject__user=user)))
        account = _account_subject(user)
        now = timezone.now()
        account_states = {
            state.purpose_id: state
            for state in ConsentState.objects.filter(subject=account).select_related("event")
        }
        already_copied = set(
            LedgerEvent.objects.filter(subject=account, linked_from__isnull=False).values_list(
                "linked_from", flat=True
            )
        )
        browser_states = (
            ConsentState.objects.filter(subject=browser)
            .select_related("event", "purpose", "event__notice")
            .order_by("event__seq")
        )
        for state in browser_states:
            source = state.event
            if source.id in already_copied or state.renewal_required:
                continue
            if state.status not in (
                *GRANTING_EVENTS,
                EventType.REFUSED,
                EventType.WITHDRAWN,
                EventType.REVOKED,
            ):
                continue
            if state.valid_until is not None and state.valid_until <= now:
                continue
            if not state.purpose.is_active:
                continue
            mine = account_states.get(state.purpose_id)
            if mine is not None and mine.event.seq > source.seq:
                continue
            event = _new_event(
                subject=account,
                purpose=state.purpose,
                event_type=source.event_type,
                notice=source.notice,
                collection_method=source.collection_method,
                actor_type=ActorType.RESIDENT,
                actor_id=str(account.id),
                partner_client_id=source.partner_client_id,
                occurred_at=now,
                valid_until=source.valid_until,
                details=None,
                linked_from=source.id,
            )
            ledger.append(head, event)
            _state_set(subject=account, purpose=state.purpose, event=event, state=mine)
            appended.append(event)
        browser.user = user
        browser.linked_at = now
        browser.save(update_fields=["user", "linked_at"])
        # The data kept for this browser under a purpose (inferred interests) joins the account
        # with the same proof (consent.purpose_data).
        purpose_data.browser_linked(browser_hash=browser_hash, user=user)
    return appended


def _events_check(queryset: Any) -> None:
    """Raise LedgerTampered if a stored row `queryset` selects is malformed or altered."""
    sql, params = queryset.values("pk").query.sql_with_params()
    problems = [p for p in ledger.rows_check(sql, params) if p.kind != "missing"]
    if problems:
        raise LedgerTampered(problems)


# --- Erasure ---------------------------------------------------------------------------------


def subject_erase(*, user: User, acting_user: User | None = None) -> ErasureReport:
    """Crypto-shred the consent data of `user`: destroy the data keys, cut the account link.

    Ledger events stay (proof of consent may have to be shown, GDPR Art. 7(1) and 17(3)(e))
    under their pseudonym; their encrypted details become unreadable for everyone; leaf
    hashes, proofs, receipts and tree heads keep verifying. Covers the account subject and
    every browser subject attached to the account. Idempotent.
    """
    if not isinstance(user, User) or user.pk is None:
        raise ConsentError("user must be a saved resident account")
    now = timezone.now()
    with transaction.atomic():
        # Serialised with appends: no event can be encrypted under a key being destroyed.
        ledger.lock_head()
        subjects = list(Subject.objects.select_for_update().filter(user=user))
        for subject in subjects:
            subject.wrapped_key = None
            subject.key_destroyed_at = subject.key_destroyed_at or now
            subject.user = None
            subject.save(update_fields=["wrapped_key", "key_destroyed_at", "user"])
        audit_log(
            event="consent.subject_erased",
            acting_user=acting_user,
            subject_user=user,
            data={"subjects": len(subjects)},
        )
    return ErasureReport(
        provider="consent",
        erased=["per-subject data keys (encrypted event details)", "link between account and pseudonyms"],
        kept=["ledger events under their pseudonym (proof of consent, GDPR Art. 7(1))"],
        details={"subjects": len(subjects)},
    )


# --- Catalogue and notices -------------------------------------------------------------------


def purpose_create(
    *,
    code: str,
    title_fr: str,
    title_en: str,
    description_fr: str,
    description_en: str,
    gdpr_article: str = "Art. 6(1)(a)",
    dpv_legal_basis: str = "eu-gdpr:A6-1-a",
    dpv_purpose: str = "dpv:ServicePersonalisation",
    data_categories: list[dict[str, str]] | None = None,
    recipients: list[str] | None = None,
    retention_days: int | None = None,
    consent_lifetime_days: int | None = 395,
    requires_consent: bool = True,
    acting_user: User | None = None,
) -> Purpose:
    """Add a purpose to the catalogue. Codes are permanent (they are hashed into the ledger)."""
    if not isinstance(code, str) or not PURPOSE_CODE_PATTERN.match(code):
        raise ConsentError("a purpose code is 2-255 characters: lowercase letters, digits, . _ : + -")
    for label, value in (("title_fr", title_fr), ("title_en", title_en)):
        if not isinstance(value, str) or not value.strip():
            raise ConsentError(f"{label} is required")
    if consent_lifetime_days is not None and not 1 <= consent_lifetime_days <= MAX_CONSENT_LIFETIME.days:
        raise ConsentError("the consent lifetime is 1 to 395 days (13 months)")
    for category in data_categories or []:
        if not isinstance(category, dict) or category.get("kind") not in ("declared", "inferred"):
            raise ConsentError("each data category needs kind 'declared' or 'inferred'")
    with transaction.atomic():
        if Purpose.objects.filter(code=code).exists():
            raise ConsentError(f"purpose {code!r} already exists")
        purpose = Purpose.objects.create(
            code=code,
            title_fr=title_fr.strip(),
            title_en=title_en.strip(),
            description_fr=description_fr,
            description_en=description_en,
            gdpr_article=gdpr_article,
            dpv_legal_basis=dpv_legal_basis,
            dpv_purpose=dpv_purpose,
            data_categories=data_categories or [],
            recipients=recipients or [],
            retention_days=retention_days,
            consent_lifetime_days=consent_lifetime_days,
            requires_consent=requires_consent,
        )
        audit_log(event="consent.purpose_created", acting_user=acting_user, data={"purpose": code})
    return purpose


def purpose_for_client(*, client: Any, key: str, fields: dict[str, Any]) -> Purpose:
    """The purpose of one partner client under `key`: the existing one, or a new one of `fields`.

    Get-or-create, safe under concurrency; one purpose per (client, key). The key is the
    caller's name for what the purpose covers (identity.oidc: the sorted scope set); consent
    stores it (`Purpose.client_key`) and never interprets it. `fields` are the new purpose's
    other fields (code, titles, descriptions, legal basis, data categories...), used only
    when it is created.
    """
    if client is None or getattr(client, "pk", None) is None:
        raise ConsentError("a registered client is required")
    if not isinstance(key, str) or not key.strip():
        raise ConsentError("a purpose key is required")
    existing = Purpose.objects.filter(client=client, client_key=key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Purpose.objects.create(**{**fields, "client": client, "client_key": key})
    except IntegrityError:
        # Another request created it first.
        purpose = Purpose.objects.filter(client=client, client_key=key).first()
        if purpose is None:
            raise
        return purpose


def notice_publish(
    *,
    purpose: Purpose | None,
    text_fr: str,
    text_en: str,
    material: bool,
    acting_user: User | None = None,
) -> PrivacyNotice:
    """Publish the next version of a purpose's notice (or of the global one, `purpose=None`).

    With `material=True`, every current grant of the affected purposes (all consent-based
    purposes for the global notice) is flagged `renewal_required`: the gate answers "not
    granted" until the resident gives or renews consent under the new notice. Serialised
    with ledger appends, so no grant can slip in under the old notice unflagged.
    """
    for label, value in (("text_fr", text_fr), ("text_en", text_en)):
        if not isinstance(value, str) or not value.strip():
            raise ConsentError(f"{label} is required")
    if purpose is not None and (not isinstance(purpose, Purpose) or purpose.pk is None):
        raise ConsentError("purpose must be a saved Purpose or None for the global notice")
    with transaction.atomic():
        ledger.lock_head()
        now = timezone.now()
        scope = (
            PrivacyNotice.objects.filter(purpose=purpose)
            if purpose
            else PrivacyNotice.objects.filter(purpose__isnull=True)
        )
        version = (scope.aggregate(top=Max("version"))["top"] or 0) + 1
        notice = PrivacyNotice.objects.create(
            purpose=purpose,
            version=version,
            text_fr=text_fr,
            text_en=text_en,
            content_sha256=notice_content_sha256(text_fr, text_en),
            material=bool(material),
            published_at=now,
        )
        flagged = 0
        if material:
            affected = ConsentState.objects.filter(
                status__in=GRANTING_EVENTS, renewal_required=False, purpose__requires_consent=True
            )
            if purpose is not None:
                affected = affected.filter(purpose=purpose)
            flagged = affected.update(renewal_required=True, updated_at=now)
        audit_log(
            event="consent.notice_published",
            acting_user=acting_user,
            data={
                "notice": notice.pk,
                "purpose": purpose.code if purpose else None,
                "version": version,
                "material": bool(material),
                "renewal_required": flagged,
            },
        )
    return notice


# --- Signed tree heads -----------------------------------------------------------------------


def tree_head_sign() -> TreeHead:
    """Sign (ES256, the service's active key) and store a tree head over the current ledger:
    the pending events are integrated first (`ledger_integrate`), each batch with its own
    signed head; with nothing pending, a fresh head over the current tree."""
    done = ledger.integrate_all()
    if done.tree_head is not None:
        return done.tree_head
    return ledger.tree_head_create()


def ledger_integrate(*, limit: int = ledger.INTEGRATE_BATCH) -> ledger.Integration:
    """The sequencer's step: integrate up to `limit` pending events into the Merkle tree (one
    head update, one signed tree head). Run by the outbox worker and `manage.py
    ledger_sequencer`; raises LedgerTampered, integrating nothing, over an altered row."""
    return ledger.integrate(limit=limit)
