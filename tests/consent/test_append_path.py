"""The append path's statements (issue 14): the leaf entry split around its index (the hash
PostgreSQL computes in the one-statement append), the leaf-index counter missing or altered,
and the order of an append's locks (the head row's before the subject's)."""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from django.db import connection

from consent import ledger, merkle, services
from consent.ledger import LedgerTampered, entry_around_seq, event_entry_bytes
from consent.models import ConsentState, LedgerEvent, Purpose, Subject
from consent.selectors import consent_is_granted, ledger_verify
from consent.services import browser_id_hash, consent_record
from identity.oidc.sharing import purpose_for_client_scopes
from tests.consent.test_concurrency_postgres import database_url, ensure_catalogue

POSTGRESQL = connection.vendor == "postgresql"


def _event(**fields: Any) -> LedgerEvent:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "event_type": "given",
        "subject_id": uuid.uuid4(),
        "purpose_id": 1,
        "purpose_code": "personalisation-declared",
        "notice_id": 3,
        "notice_version": 2,
        "notice_sha256": "ab" * 32,
        "collection_method": "web_form",
        "actor_type": "resident",
        "actor_id": str(uuid.uuid4()),
        "partner_client_id": "",
        "occurred_at": datetime(2026, 12, 6, 5, 4, 3, 21, tzinfo=UTC),
        "valid_until": datetime(2027, 6, 6, 5, 4, 3, 21, tzinfo=UTC),
        "linked_from": None,
        "details_ciphertext": None,
    }
    values.update(fields)
    return LedgerEvent(**values)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"notice_id": None, "notice_version": None, "notice_sha256": "", "valid_until": None},
        {
            "details_ciphertext": bytes(range(60)),
            "linked_from": uuid.uuid4(),
            "partner_client_id": "médiathèque",
        },
        {"actor_type": "partner", "actor_id": 'a "quoted" ünïcode \\ id', "event_type": "revoked"},
        {"purpose_code": "share:client:openid profile", "collection_method": "oidc_consent"},
    ],
)
@pytest.mark.parametrize("seq", [0, 7, 10, 123_456_789_012])
def test_the_entry_around_its_index_is_the_entry(fields: dict[str, Any], seq: int) -> None:
    event = _event(**fields)
    before, after = entry_around_seq(event)
    event.seq = seq
    assert before + str(seq).encode() + after == event_entry_bytes(event)


@pytest.mark.django_db
def test_an_append_without_a_counter_row_starts_after_the_stored_events(
    ledger_ready: Any, make_resident: Any
) -> None:
    resident = _resident_with_two_decisions(make_resident)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM consent_ledgersequence")
    event = consent_record(
        user=resident,
        purpose_code="personalisation-declared",
        event_type="given",
        collection_method="web_form",
    )
    assert event.seq == 2
    stored = LedgerEvent.objects.get(pk=event.pk)
    assert bytes(stored.leaf_hash) == event.leaf_hash == merkle.leaf_hash(event_entry_bytes(stored))
    assert (
        ConsentState.objects.get(subject_id=event.subject_id, purpose_id=event.purpose_id).event_id
        == event.id
    )
    assert consent_is_granted(user=resident, purpose_code="personalisation-declared")
    assert ledger_verify().ok


@pytest.mark.django_db
@pytest.mark.parametrize("next_seq", [0, 1])
def test_a_counter_set_back_appends_nothing(
    ledger_ready: Any, make_resident: Any, snapshot: Any, next_seq: int
) -> None:
    resident = make_resident()
    for event_type in ("given", "withdrawn", "given"):
        consent_record(
            user=resident,
            purpose_code="personalisation-declared",
            event_type=event_type,
            collection_method="web_form",
        )
    ledger.integrate()  # the head's size is 3: position 1 is behind it, position 0 too
    with connection.cursor() as cursor:
        cursor.execute("UPDATE consent_ledgersequence SET next_seq = %s", [next_seq])
    before = snapshot()
    with pytest.raises(LedgerTampered) as raised:
        consent_record(
            user=resident,
            purpose_code="personalisation-declared",
            event_type="withdrawn",
            collection_method="web_form",
        )
    assert "leaf-index counter" in raised.value.problems[0].detail
    assert snapshot() == before
    assert consent_is_granted(user=resident, purpose_code="personalisation-declared")


@pytest.mark.django_db
def test_a_counter_behind_unintegrated_events_appends_nothing(
    ledger_ready: Any, make_resident: Any, snapshot: Any
) -> None:
    resident = _resident_with_two_decisions(make_resident)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE consent_ledgersequence SET next_seq = 1")
    before = snapshot()
    with pytest.raises(LedgerTampered) as raised:
        consent_record(
            user=resident,
            purpose_code="personalisation-declared",
            event_type="given",
            collection_method="web_form",
        )
    assert "already holds" in raised.value.problems[0].detail
    assert snapshot() == before
    assert not consent_is_granted(user=resident, purpose_code="personalisation-declared")


def _advisory_locks(cursor: Any, pid: int) -> int:
    cursor.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s AND granted", [pid]
    )
    return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL row and advisory locks")
@pytest.mark.django_db(transaction=True)
def test_an_append_takes_the_subject_lock_only_once_it_holds_the_head_row() -> None:
    """The operations that lock the head exclusively may lock a subject next: an append that
    took the subject's lock first and then waited for the head would deadlock with them."""
    ensure_catalogue()
    ledger.writer_head()  # the head row exists
    url = database_url()
    with (
        psycopg.connect(url) as exclusive,
        psycopg.connect(url) as writer,
        psycopg.connect(url, autocommit=True) as watch,
    ):
        exclusive.execute("SELECT 1 FROM consent_ledgerhead WHERE id = 1 FOR UPDATE")
        writer_pid = writer.info.backend_pid
        done = threading.Event()
        failure: list[BaseException] = []

        def append_side() -> None:
            try:
                writer.execute(ledger._WRITER_HEAD_LOCKING_SQL.replace("%s", "4242")).fetchone()
            except BaseException as exc:  # reported by the main thread
                failure.append(exc)
            done.set()

        thread = threading.Thread(target=append_side)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = watch.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [writer_pid]
            ).fetchone()
            if waiting and waiting[0] == "Lock":
                break
            time.sleep(0.02)
        else:
            pytest.fail("the writer never waited for the head row")
        with watch.cursor() as cursor:
            assert _advisory_locks(cursor, writer_pid) == 0  # waiting for the head: no subject lock yet
        exclusive.rollback()
        assert done.wait(30)
        thread.join()
        assert not failure, failure
        with watch.cursor() as cursor:
            assert _advisory_locks(cursor, writer_pid) == 1  # then the subject's, in the same statement
        writer.rollback()
        with watch.cursor() as cursor:
            assert _advisory_locks(cursor, writer_pid) == 0  # held until the end of the transaction


def _resident_with_two_decisions(make_resident: Any) -> Any:
    """A resident who gave, then withdrew, the declared-profile purpose."""
    resident = make_resident()
    for event_type in ("given", "withdrawn"):
        consent_record(
            user=resident,
            purpose_code="personalisation-declared",
            event_type=event_type,
            collection_method="web_form",
        )
    return resident


def _rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cursor.fetchall()]


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRESQL, reason="the PL/pgSQL functions of migration consent 0012")
@pytest.mark.django_db
def test_the_append_functions_return_what_the_plain_queries_return(
    ledger_ready: Any, make_resident: Any, make_client: Any
) -> None:
    """consent_decision_context and consent_writer_head (PostgreSQL) against the queries they
    hold, as SQLite runs them: every case of the append's read (a subject with a state, without
    one, without a subject row; an account, a browser; the metropolis' purpose and a partner's;
    an unknown and a retired purpose) and the head before and after an integration."""
    resident, newcomer = _resident_with_two_decisions(make_resident), make_resident()
    browser = "b" * 32
    consent_record(
        browser_id=browser,
        purpose_code="audience-measurement",
        event_type="refused",
        collection_method="cookie_widget",
    )
    partner = make_client(name="Médiathèques").client
    shared = purpose_for_client_scopes(client=partner, scopes=["openid", "email"])
    consent_record(
        user=resident, purpose_code=shared.code, event_type="given", collection_method="oidc_consent"
    )
    Purpose.objects.filter(code="service-news-email").update(is_active=False)
    browser_hash = browser_id_hash(browser)
    user_keys = [resident.pk, newcomer.pk]
    codes = [
        "personalisation-declared",
        "audience-measurement",
        shared.code,
        "service-news-email",
        "no-such-purpose",
    ]
    compared = 0
    for code in codes:
        for user_key in user_keys:
            function = _rows(services._CONTEXT_CALL_SQL, [user_key, None, code])
            assert function == _rows(services._context_sql(True), [user_key, code])
            compared += len(function)
        for hashed in (browser_hash, browser_id_hash("c" * 32)):
            function = _rows(services._CONTEXT_CALL_SQL, [None, hashed, code])
            assert function == _rows(services._context_sql(False), [hashed, code])
            compared += len(function)
    assert compared == 4 * 4  # one row per known purpose and subject key, none for the unknown code
    subject_rows = _rows(services._CONTEXT_CALL_SQL, [resident.pk, None, shared.code])
    assert subject_rows[0][6] == partner.client_id and subject_rows[0][15] is not None  # partner, state
    assert _rows(services._CONTEXT_CALL_SQL, [newcomer.pk, None, shared.code])[0][10] is None  # no subject

    for _ in range(2):
        plain = _rows(ledger._WRITER_HEAD_SQL, [])
        assert _rows(ledger._WRITER_HEAD_LOCKING_SQL, [None]) == plain
        assert _rows(ledger._WRITER_HEAD_LOCKING_SQL, [4242]) == plain
        ledger.integrate()
    assert plain[0][0] == 4  # the head after the integration of the four events


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL row and advisory locks")
@pytest.mark.django_db(transaction=True)
def test_the_head_read_without_a_subject_key_takes_no_advisory_lock() -> None:
    """`writer_head()` without a subject (the exclusive operations' appends, a resident's
    lock taken elsewhere) locks the head row in key-share mode and nothing else."""
    ensure_catalogue()
    ledger.writer_head()  # the head row exists
    url = database_url()
    with psycopg.connect(url) as writer, psycopg.connect(url, autocommit=True) as watch:
        assert writer.execute(ledger._WRITER_HEAD_LOCKING_SQL, [None]).fetchone() is not None
        with watch.cursor() as cursor:
            assert _advisory_locks(cursor, writer.info.backend_pid) == 0
            cursor.execute(
                "SELECT mode FROM pg_locks WHERE pid = %s AND locktype = 'transactionid' AND granted",
                [writer.info.backend_pid],
            )
            assert cursor.fetchall()  # the row lock gave the writer a transaction id
        # An exclusive lock of the head waits for the writer's shared one.
        with psycopg.connect(url) as exclusive:
            exclusive.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                exclusive.execute("SELECT 1 FROM consent_ledgerhead WHERE id = 1 FOR UPDATE")
        writer.rollback()


def test_the_append_function_takes_every_column_of_the_event_but_its_index_and_leaf() -> None:
    """consent_append_event (migration consent 0012) names its columns: a column added to the
    model must be added to it too, or PostgreSQL's appends would leave it empty."""
    stored = {field.attname for field in LedgerEvent._meta.concrete_fields} - {"seq", "leaf_hash"}
    columns = tuple(column for column, _kind in ledger.APPEND_COLUMNS)
    assert len(columns) == len(stored) and set(columns) == stored
    functions = importlib.import_module("consent.migrations.0012_append_functions")
    assert columns == functions.EVENT_COLUMNS


@pytest.mark.parametrize("valid_until", [datetime(2027, 6, 6, 5, 4, 3, 21, tzinfo=UTC), None])
@pytest.mark.django_db
def test_the_appended_state_is_the_one_consent_record_writes(valid_until: datetime | None) -> None:
    """`append(..., with_state=True)` upserts the current state from the event's own columns
    (ledger._state_params; on PostgreSQL consent_append_event does it from the same columns):
    the statement and parameters `services._state_write` gives for that event, with the same
    conversions, so no parameter of the state is built where nothing runs it."""
    event = _event(valid_until=valid_until, event_type="withdrawn")
    subject = Subject(id=event.subject_id, kind="account")
    purpose = Purpose(pk=event.purpose_id, code=event.purpose_code)
    sql, params = services._state_write(subject=subject, purpose=purpose, event=event)
    assert sql == ledger.STATE_UPSERT_SQL
    assert list(params) == ledger._state_params(event)
    assert services._STATE_UPSERT_SQL is ledger.STATE_UPSERT_SQL
