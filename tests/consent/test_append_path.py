"""The append path's statements (issue 14): the leaf entry split around its index (the hash
PostgreSQL computes in the one-statement append), the leaf-index counter missing or altered,
and the order of an append's locks (the head row's before the subject's)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from django.db import connection

from consent import ledger, merkle
from consent.ledger import LedgerTampered, entry_around_seq, event_entry_bytes
from consent.models import ConsentState, LedgerEvent
from consent.selectors import consent_is_granted, ledger_verify
from consent.services import consent_record
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
