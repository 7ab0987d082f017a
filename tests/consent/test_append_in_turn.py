"""A single decision's head and context reads in one round trip, and the event's columns passed
to PostgreSQL without the fields' conversions (issue 14, branch `append`).

`consent.prepared.fetch_in_turn` sends several statements as one query string on PostgreSQL:
each must run in a snapshot of its own taken once the one before finished (the context read
after the subject's lock sees what the subject's previous decision committed), return what it
returns alone, and an error must stop the rest. `consent.ledger._column_value` must give what
`get_db_prep_save` gives for every column of every event an append writes."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from consent import ledger, prepared, services
from consent.models import LedgerEvent
from consent.selectors import ledger_verify
from consent.services import consent_record
from identity.models import User
from tests.consent.test_concurrency_postgres import database_url, ensure_catalogue

POSTGRESQL = connection.vendor == "postgresql"


def _decisions(make_resident: Any) -> list[LedgerEvent]:
    """A mix of decisions: grants, refusals, withdrawals, details, a browser, a new subject."""
    resident, other = make_resident(), make_resident()
    events = [
        consent_record(user=resident, purpose_code=code, event_type=kind, collection_method="web_form")
        for code, kind in (
            ("personalisation-declared", "given"),
            ("personalisation-browsing", "refused"),
            ("service-news-email", "given"),
            ("personalisation-declared", "withdrawn"),
            ("audience-measurement", "refused"),
        )
    ]
    events.append(
        consent_record(
            user=other,
            purpose_code="service-news-email",
            event_type="given",
            collection_method="web_form",
            details={"evidence": "formulaire papier n° 12"},
        )
    )
    events.append(
        consent_record(
            browser_id="d" * 32,
            purpose_code="audience-measurement",
            event_type="refused",
            collection_method="cookie_widget",
        )
    )
    return events


@pytest.mark.django_db
def test_the_column_values_are_those_of_the_fields_conversions(
    ledger_ready: Any, make_resident: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value `_column_value` gave an append (PostgreSQL: consent_append_event's parameters)
    equals `get_db_prep_save`'s, of the same type; on every database, the values it passes as
    they are are those `get_db_prep_save` returns unchanged on PostgreSQL."""
    seen: list[tuple[Any, Any, Any]] = []
    fast = ledger._column_value

    def watched(field: Any, value: Any) -> Any:
        result = fast(field, value)
        seen.append((field, value, result))
        return result

    monkeypatch.setattr(ledger, "_column_value", watched)
    events = _decisions(make_resident)
    if POSTGRESQL:
        assert len(seen) == len(events) * len(ledger.APPEND_COLUMNS)
        for field, value, result in seen:
            expected = field.get_db_prep_save(value, connection)
            assert type(result) is type(expected), field.attname
            if isinstance(expected, psycopg.Binary):
                assert result.obj == expected.obj
            else:
                assert result == expected, field.attname
        passed = {field.attname for field, value, result in seen if value is not None and value is result}
        assert passed >= {"id", "subject_id", "purpose_code", "occurred_at"}
    # The shortcut's own cases, whatever the database: None, str, UUID and aware datetimes as
    # they are; integers, naive datetimes, bytes, booleans, enumerations through the field.
    fields = {field.attname: field for field in LedgerEvent._meta.concrete_fields}
    event = events[0]
    assert fast(fields["occurred_at"], event.occurred_at) is event.occurred_at
    assert fast(fields["id"], event.id) is event.id
    assert fast(fields["linked_from"], None) is None
    marked: list[Any] = []
    field = fields["details_ciphertext"]
    monkeypatch.setattr(field, "get_db_prep_save", lambda value, conn: marked.append(value) or value)
    fast(field, b"\x01")
    assert marked == [b"\x01"]
    assert ledger_verify().ok


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRESQL, reason="one query string of several statements (PostgreSQL)")
@pytest.mark.django_db
def test_the_statements_in_turn_return_what_each_returns_alone(ledger_ready: Any, make_resident: Any) -> None:
    """The head and context reads of a decision, in one round trip and one by one: the same rows,
    for an account with and without a state, a browser and an unknown purpose (no row)."""
    resident = make_resident()
    consent_record(
        user=resident,
        purpose_code="personalisation-declared",
        event_type="given",
        collection_method="web_form",
    )
    cases = [
        (resident, None, "personalisation-declared"),
        (resident, None, "service-news-email"),
        (make_resident(), None, "personalisation-browsing"),
        (None, services.browser_id_hash("e" * 32), "audience-measurement"),
        (resident, None, "no-such-purpose"),
    ]
    for user, browser_hash, code in cases:
        with transaction.atomic():
            statements = [
                ledger.writer_head_statement(subject_lock=4242),
                services._context_statement(user=user, browser_hash=browser_hash, purpose_code=code),
            ]
            together = prepared.fetch_in_turn(statements)
            alone = [prepared.prepared_fetch(sql, params) for sql, params in statements]
        assert together == alone
        assert together[0] is not None and ledger.head_of_row(together[0]) is not None
        assert (together[1] is None) == (code == "no-such-purpose")
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        prepared.fetch_in_turn(statements)
    selects = [query["sql"] for query in captured.captured_queries if query["sql"].startswith("SELECT")]
    assert len(selects) == 2  # watched queries: one by one, each seen


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRESQL, reason="one query string of several statements (PostgreSQL)")
@pytest.mark.django_db(transaction=True)
def test_a_statement_in_turn_sees_what_committed_while_the_one_before_waited() -> None:
    """The context read must see what the subject's previous holder committed before releasing
    its lock: the second statement's snapshot is taken once the first (the lock) returned."""
    ensure_catalogue()
    email = "in-turn@example.org"
    table = User._meta.db_table
    found: list[Any] = []
    failure: list[BaseException] = []

    def waiting_side() -> None:
        try:
            with transaction.atomic():
                found.extend(
                    prepared.fetch_in_turn(
                        [
                            ("SELECT pg_advisory_xact_lock(%s)", [4343]),
                            (f"SELECT count(*) FROM {table} WHERE email = %s", [email]),
                        ]
                    )
                )
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            connection.close()

    with psycopg.connect(database_url()) as holder, psycopg.connect(database_url(), autocommit=True) as watch:
        holder.execute("SELECT pg_advisory_xact_lock(4343)")
        User.objects.create(email=email, password="!")  # committed (autocommit), but behind the lock:
        # the waiting side's first statement cannot return before the holder commits.
        thread = threading.Thread(target=waiting_side)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ["SELECT pg_advisory_xact_lock%"],
            ).fetchone()
            if row and row[0]:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the statements in turn never waited for the lock")
        User.objects.filter(email=email).update(email="in-turn-2@example.org")
        email_now = "in-turn-2@example.org"
        holder.commit()  # releases the lock
        thread.join(30)
    assert not failure, failure
    assert found[0] is not None
    # The count ran after the lock: it saw the update committed while the lock was waited for
    # (the old address is gone).
    assert found[1] == (0,)
    assert User.objects.filter(email=email_now).exists()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRESQL, reason="one query string of several statements (PostgreSQL)")
@pytest.mark.django_db
def test_an_error_in_turn_stops_the_statements_after_it(ledger_ready: Any) -> None:
    """A failing first statement raises django.db's error and the second never runs."""
    with pytest.raises(DataError), transaction.atomic():
        prepared.fetch_in_turn(
            [
                ("SELECT 1 / %s", [0]),
                ("SELECT pg_advisory_xact_lock(%s)", [4444]),
            ]
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        assert cursor.fetchone() == (0,)
