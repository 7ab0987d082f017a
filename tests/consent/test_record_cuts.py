"""A single decision's Python, lighter (issue 14, branch `record`): the entry's two parts around
the leaf index from one serialisation (`consent.ledger.entry_around_seq`), and the writer's head
built without `Model.__init__` (`consent.ledger.head_of_row`). Same bytes, same instance."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.db.models import signals

from consent import ledger, merkle
from consent.models import LedgerEvent, LedgerHead
from consent.selectors import ledger_verify
from consent.services import consent_record
from tests.consent.test_append_in_turn import _decisions

# Texts an attacker or a partner may choose, that look like the cut if quotes were not escaped.
AWKWARD = [
    "",
    "plain",
    ',"seq":0,"subject":',
    '"seq":0',
    'x","seq":0,"subject":"y',
    '\\","seq":0,"subject":',
    "é ü ✓ \u2028 \x00 \n",
    "seq",
]


def _event(text: str, *, notice: bool, details: bytes | None, linked: bool, seq: int) -> LedgerEvent:
    return LedgerEvent(
        id=uuid.uuid4(),
        seq=seq,
        event_type="given",
        subject_id=uuid.uuid4(),
        purpose_id=1,
        purpose_code=text or "news",
        notice_id=7 if notice else None,
        notice_version=3 if notice else None,
        notice_sha256=(text or "a" * 64) if notice else "",
        collection_method="web_form",
        actor_type="partner",
        actor_id=text,
        partner_client_id=text,
        occurred_at=datetime(2026, 12, 7, 4, 30, 1, 123456, tzinfo=UTC),
        valid_until=datetime(2027, 12, 7, tzinfo=UTC) if notice else None,
        linked_from=uuid.uuid4() if linked else None,
        details_ciphertext=details,
    )


def _halves(event: LedgerEvent) -> tuple[bytes, bytes]:
    """The parts as they were built before: each half serialised on its own."""
    return ledger._entry_halves(ledger.entry_dict({**ledger.event_row(event), "seq": 0}))


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("seq", [0, 1, 9, 10, 12_345, 2**40])
def test_the_entry_parts_are_those_of_the_two_halves_and_of_the_whole_entry(text: str, seq: int) -> None:
    for notice in (False, True):
        for details in (None, b"\x00" * 40, b'"seq":0'):
            for linked in (False, True):
                event = _event(text, notice=notice, details=details, linked=linked, seq=seq)
                before, after = ledger.entry_around_seq(event)
                assert (before, after) == _halves(event)
                assert before + str(seq).encode() + after == ledger.event_entry_bytes(event)


def test_the_halves_are_serialised_apart_when_the_cut_is_not_found_once(monkeypatch: Any) -> None:
    event = _event("plain", notice=True, details=None, linked=False, seq=5)
    expected = _halves(event)
    monkeypatch.setattr(ledger, "_SEQ_CUT", b'"')  # found many times: not a cut
    assert ledger.entry_around_seq(event) == expected
    monkeypatch.setattr(ledger, "_SEQ_CUT", b"never there")
    assert ledger.entry_around_seq(event) == expected


@pytest.mark.django_db
def test_the_appended_events_hash_their_stored_entries(ledger_ready: Any, make_resident: Any) -> None:
    """Every event of a mix of decisions (grants, refusals, withdrawals, details, a browser, a new
    subject) has the leaf hash of its stored row's entry, and the ledger verifies."""
    events = _decisions(make_resident)
    for event in events:
        stored = LedgerEvent.objects.get(pk=event.pk)
        assert bytes(stored.leaf_hash) == merkle.leaf_hash(ledger.event_entry_bytes(stored))
        assert bytes(stored.leaf_hash) == event.leaf_hash
    assert ledger_verify().ok


@pytest.mark.django_db
def test_the_writers_head_is_the_head_row_as_init_builds_it(ledger_ready: Any, make_resident: Any) -> None:
    consent_record(
        user=make_resident(),
        purpose_code="service-news-email",
        event_type="given",
        collection_method="web_form",
    )
    ledger.integrate()
    row = (3, b"\x11" * 32, b"\x22" * 64, False, True)
    head = ledger.head_of_row(row)
    assert type(head) is LedgerHead
    assert (head.id, head.pk, head.size, head.root_hash, head.frontier) == (
        1,
        1,
        3,
        b"\x11" * 32,
        b"\x22" * 64,
    )
    assert (head._state.adding, head._state.db) == (False, connection.alias)
    assert head._position_behind is True  # type: ignore[attr-defined]
    assert ledger.head_of_row(None) is None
    # The stored row, read by the writers' statement: what the ORM reads of it; updated_at, not
    # among the statement's columns, is read from the database if ever used (deferred).
    head = ledger.writer_head()
    stored = LedgerHead.objects.get(pk=1)
    assert (head.size, bytes(head.root_hash), bytes(head.frontier)) == (
        stored.size,
        bytes(stored.root_hash),
        bytes(stored.frontier),
    )
    assert head.get_deferred_fields() == {"updated_at"}
    assert head.updated_at == stored.updated_at
    assert ledger.head_check(head) == ledger.head_check(stored)


@pytest.mark.django_db
def test_a_post_init_receiver_still_sees_the_writers_head(ledger_ready: Any) -> None:
    seen: list[Any] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(instance)

    signals.post_init.connect(receiver, sender=LedgerHead)
    try:
        head = ledger.head_of_row((0, merkle.EMPTY_ROOT, b"", False, False))
    finally:
        signals.post_init.disconnect(receiver, sender=LedgerHead)
    assert seen == [head]
