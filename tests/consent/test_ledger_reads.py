"""The ledger's read side at speed (issue 14): the verifier's fast path, the one-statement
proofs, the prepared gate statement. Correctness only: speed is measured by bench/ledger.py,
never asserted here."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from consent import gate, ledger, merkle, selectors
from consent.models import LedgerEvent
from consent.prepared import prepared_cursor
from consent.selectors import consent_is_granted, ledger_verify
from consent.services import browser_subject_register, consent_record, subject_link_browser, tree_head_sign
from tests.security.test_ledger_tampering import execute, unlock

BROWSER = "cmVhZHMtYXQtc3BlZWQtYnJvd3Nlci1pZC0wMDAwMDAwMA"


def varied_ledger(make_resident: Any) -> list[LedgerEvent]:
    """Events of every shape the application writes: residents, staff on behalf, a browser
    then its link to an account (linked_from), details with quotes, backslashes, control
    characters and non-ASCII text, decisions with and without an end of validity."""
    residents = [make_resident() for _ in range(3)]
    staff = get_user_model().objects.create_user(
        email="agent-reads@example.org", password=None, is_staff=True
    )
    events = []
    purposes = [
        "personalisation-declared",
        "personalisation-browsing",
        "service-news-email",
        "audience-measurement",
    ]
    for i in range(14):
        events.append(
            consent_record(
                user=residents[i % 3],
                purpose_code=purposes[i % 4],
                event_type=("given", "refused", "withdrawn", "given")[i % 4],
                collection_method="web_form",
                valid_until=timezone.now() + timedelta(days=30) if i % 4 == 3 else None,
                details={"note": f'évènement "{i}" \\ \n\t☃'} if i % 3 == 0 else None,
            )
        )
    events.append(
        consent_record(
            user=residents[0],
            purpose_code="service-news-email",
            event_type="given",
            collection_method="staff_on_behalf",
            acting_user=staff,
            details={"form": "formulaire papier n° 2024-118"},
        )
    )
    secret = browser_subject_register(browser_id=BROWSER)
    events.append(
        consent_record(
            browser_id=BROWSER,
            purpose_code="personalisation-browsing",
            event_type="given",
            collection_method="cookie_widget",
        )
    )
    events.extend(subject_link_browser(browser_id=BROWSER, browser_secret=secret, user=residents[1]))
    assert any(event.linked_from for event in events)
    return events


def test_every_sound_row_takes_the_fast_path_and_hashes_as_the_full_path(
    ledger_ready: Any, make_resident: Any
) -> None:
    events = varied_ledger(make_resident)
    vendor = connection.vendor
    with connection.cursor() as cursor:
        reference = ledger._Reference(cursor)
    fast = ledger._FastLeaves(vendor, reference)
    rows = ledger._rows_cursor(vendor)
    try:
        read = [values for batch in iter(lambda: rows.fetchmany(7), []) for values in batch]
    finally:
        rows.close()
    assert len(read) == len(events)
    for values, event in zip(read, events, strict=True):
        full = ledger._event_row(fast.full(values), vendor, reference)
        # The full path's entry is the application's own entry for this event...
        assert ledger.entry_bytes(full) == ledger.event_entry_bytes(event)
        # ...and the fast path accepts the row with the same leaf (the stored one).
        assert fast.leaf(values) == merkle.leaf_hash(ledger.entry_bytes(full)) == bytes(event.leaf_hash)
    tree_head_sign()
    result = ledger_verify()
    assert result.ok and result.size == len(events) and result.tree_heads_checked == 1


def test_the_fast_path_refuses_what_the_full_path_would_report(ledger_ready: Any, make_resident: Any) -> None:
    """Unusual values never get a leaf from the fast path: the full path reports them."""
    varied_ledger(make_resident)
    vendor = connection.vendor
    with connection.cursor() as cursor:
        reference = ledger._Reference(cursor)
    fast = ledger._FastLeaves(vendor, reference)
    rows = ledger._rows_cursor(vendor)
    try:
        values = list(rows.fetchmany(1)[0])
    finally:
        rows.close()
    assert fast.leaf(tuple(values)) is not None
    changes = {
        2: "unknown-type",  # event_type
        4: "service-news-email",  # purpose_code no longer the purpose_id's
        10: "x" * 101,  # actor_id longer than the column
        15: b"short",  # details too short to be AES-GCM
        16: b"\x00" * 32,  # another stored leaf
        17: 999_999,  # purpose_id naming no purpose
        18: True,  # a timestamp out of range
    }
    for column, value in changes.items():
        altered = list(values)
        altered[column] = value
        assert fast.leaf(tuple(altered)) is None, column
    altered = list(values)
    altered[10] = "\udcff"  # not UTF-8 (SQLite's lenient decoding of a corrupted value)
    assert fast.leaf(tuple(altered)) is None


def test_proofs_from_one_statement_equal_the_rfc_for_every_size_and_leaf(
    ledger_ready: Any, make_resident: Any
) -> None:
    resident = make_resident()
    for i in range(37):
        consent_record(
            user=resident,
            purpose_code="personalisation-declared",
            event_type=("given", "withdrawn")[i % 2],
            collection_method="web_form",
        )
    leaves = [bytes(h) for h in LedgerEvent.objects.order_by("seq").values_list("leaf_hash", flat=True)]
    perfect = merkle.leaves_lookup(leaves)
    for size in range(1, 38):
        root = merkle.root_from_leaves(leaves[:size])
        assert ledger.root_at(size) == root
        for index in range(size):
            path = ledger.inclusion_proof(index, size)
            assert path == merkle.inclusion_proof(index, size, perfect)
            assert merkle.verify_inclusion(leaves[index], index, size, path, root)
    rng = random.Random(14)
    for _ in range(200):
        second = rng.randrange(1, 38)
        first = rng.randrange(0, second + 1)
        proof = ledger.consistency_proof(first, second)
        assert proof == merkle.consistency_proof(first, second, perfect)
        first_root = merkle.root_from_leaves(leaves[:first])
        assert merkle.verify_consistency(
            first, second, first_root, merkle.root_from_leaves(leaves[:second]), proof
        )
    assert ledger.root_at(0) == merkle.EMPTY_ROOT
    for bad in ((0, 38), (37, 37), (-1, 5)):
        with pytest.raises(ledger.ProofError):
            ledger.inclusion_proof(*bad)
    with pytest.raises(ledger.ProofError, match="outside the ledger"):
        ledger.consistency_proof(3, 38)
    with pytest.raises(ledger.ProofError, match="outside the ledger"):
        ledger.root_at(38)


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_proof_and_gate_statements_are_prepared_index_lookups(
    ledger_ready: Any, make_resident: Any, settings: Any
) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = True  # DATABASE_PREPARED_STATEMENTS=true in production
    resident = make_resident()
    for i in range(9):
        consent_record(
            user=resident,
            purpose_code="personalisation-declared",
            event_type=("given", "refused")[i % 2],
            collection_method="web_form",
        )
    keys = {key for lo, hi in merkle.inclusion_proof_ranges(4, 9) for key in merkle.perfect_subtrees(lo, hi)}
    proof_sql, proof_params = ledger._proof_statement(keys)
    user_key = resident.pk
    now = timezone.now()
    # The plain statements (SQLite's; on PostgreSQL the functions of migration consent 0013
    # hold them: tests/consent/test_read_functions.py checks the plans inside the functions).
    assert proof_sql == ledger._PROOF_PG_CALL
    statements = [
        (ledger._PROOF_PG_SQL, proof_params, ("consent_ledgerevent", "consent_merklenode")),
        (gate._GATE_BY_USER, [now, user_key, "personalisation-declared"], ("consent_consentstate",)),
    ]
    with connection.cursor() as cursor:
        # The test tables are tiny: forbid sequential scans so that the plan shows whether an
        # index *can* answer (the production tables are large enough for the planner to pick it).
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql, params, tables in statements:
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            for table in tables:
                assert table in plan and f"Seq Scan on {table}" not in plan, plan
    # The gate runs as a prepared statement on PostgreSQL (psycopg keeps it per connection).
    assert consent_is_granted(user=resident, purpose_code="personalisation-declared") is True
    with prepared_cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%consent_gate(%"]
        )
        assert cursor.fetchone()[0] >= 1


def test_proofs_read_the_latest_heads_and_fall_back_when_they_are_all_altered(
    resident: Any, signing_keys: Any, monkeypatch: Any
) -> None:
    # Pages and proofs read only the LATEST_HEADS largest signed tree heads (one index range);
    # when every one of them was altered in the database, all heads are read, so the latest
    # well-formed one is still used (and verify_ledger reports the altered rows).
    first = consent_record(
        purpose_code="service-news-email", event_type="given", collection_method="web_form", user=resident
    )
    older = tree_head_sign()
    consent_record(
        purpose_code="service-news-email", event_type="withdrawn", collection_method="web_form", user=resident
    )
    latest = tree_head_sign()
    assert selectors.latest_tree_head().tree_size == latest.tree_size > older.tree_size
    monkeypatch.setattr(selectors, "LATEST_HEADS", 1)
    assert selectors.event_proof(event=first)["tree_size"] == latest.tree_size

    unlock()
    execute("UPDATE consent_treehead SET root_hash = %s WHERE id = %s", [b"\x00", latest.pk])
    assert selectors.latest_tree_head().tree_size == older.tree_size
    assert selectors.event_proof(event=first)["tree_size"] == older.tree_size
