"""The lean scan of `consent.ledger.verify` (one statement per range of the log, `jobs` threads).

It only ever accepts a ledger: whatever is stored, `verify(jobs=2)` gives the row-by-row
verifier's result — the same problems, named the same way, in the same order — and an intact
ledger of any size (not a power of two, empty, one event, pending events) is accepted by the
scan itself. Data is committed (other processes read it), so these tests are transactional.
Rows are altered with `session_replication_role = replica` (no append-only trigger, no
foreign-key check for that statement), which needs a superuser, as the test database user is.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from consent import ledger, merkle
from consent.ledger import LedgerVerification
from consent.models import LedgerEvent
from consent.services import consent_record, tree_head_sign
from tests.consent.test_ledger_integrity import PURPOSES, fill
from tests.security.test_ledger_tampering import EVENT_CASES

pytestmark = pytest.mark.django_db(transaction=True)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the scan is PostgreSQL statements"
)


@pytest.fixture(autouse=True)
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ranges of 2, 4, 8... events instead of 65,536: several ranges even for a few events.
    monkeypatch.setattr(ledger, "_RANGE_MIN_LEVEL", 1)


@pytest.fixture
def row_by_row(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the row-by-row verifier's runs (the scan gave up, or SQLite)."""
    calls: list[int] = []
    original = ledger._verify_rows

    def counted(**kwargs: Any) -> LedgerVerification:
        calls.append(1)
        return original(**kwargs)

    monkeypatch.setattr(ledger, "_verify_rows", counted)
    return calls


def serial() -> LedgerVerification:
    """The row-by-row verifier alone."""
    return ledger._verify(
        problems=[],
        where={"position": 0},
        progress=None,
        progress_every=10_000,
        max_problems=100,
        chunk_size=2_000,
    )


def summary(result: LedgerVerification) -> tuple[Any, ...]:
    return (
        result.ok,
        result.size,
        result.root_hash,
        result.tree_heads_checked,
        result.pending,
        result.warnings,
        [problem.__dict__ for problem in result.problems],
    )


def append_pending(make_resident: Any, count: int) -> None:
    """Events appended and not integrated (no tree head over them)."""
    resident = make_resident()
    for i in range(count):
        consent_record(
            user=resident,
            purpose_code=PURPOSES[i % len(PURPOSES)],
            event_type="given",
            collection_method="web_form",
        )


def alter(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params or [])
        finally:
            cursor.execute("SET session_replication_role = origin")


@postgresql_only
@pytest.mark.parametrize(
    ("batches", "pending"),
    [((), 0), ((1,), 0), ((2,), 0), ((3,), 0), ((5, 3), 0), ((4, 4, 5), 0), ((5, 2), 3), ((), 2)],
    ids=["empty", "one", "two", "three", "5+3", "4+4+5", "5+2-and-3-pending", "2-pending"],
)
def test_the_scan_accepts_an_intact_ledger_of_any_size(
    make_resident: Any, signing_keys: Any, row_by_row: list[int], batches: tuple[int, ...], pending: int
) -> None:
    for count in batches:
        fill(make_resident, count)
        tree_head_sign()
    append_pending(make_resident, pending)
    for jobs in (1, 2, 3):
        result = ledger.verify(jobs=jobs)
        assert result.ok, result.problems
        assert not row_by_row, "the scan gave up on an intact ledger"
        assert summary(result) == summary(serial())
        assert result.size == sum(batches) + pending
        assert result.pending == pending
        row_by_row.clear()


@postgresql_only
def test_verify_ledger_jobs_option_and_progress(
    make_resident: Any, signing_keys: Any, row_by_row: list[int]
) -> None:
    fill(make_resident, 11)
    tree_head_sign()
    out, err = io.StringIO(), io.StringIO()
    call_command("verify_ledger", "--jobs", "2", "--every", "4", stdout=out, stderr=err)
    assert "ledger OK: 11 events" in out.getvalue()
    assert not row_by_row
    lines = err.getvalue().splitlines()
    assert lines == [f"verify_ledger: {done}/11 events ({100 * done // 11}%)" for done in (4, 8, 11)]


def _refuse(task: Any) -> None:
    return None  # a worker that gives up (as on an error)


@postgresql_only
def test_a_worker_that_gives_up_leaves_the_report_to_the_row_by_row_verifier(
    make_resident: Any, signing_keys: Any, row_by_row: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(make_resident, 6)
    tree_head_sign()
    monkeypatch.setattr(ledger, "_lean_worker", _refuse)
    result = ledger.verify(jobs=2)
    assert result.ok and row_by_row == [1]
    assert summary(result) == summary(serial())


def _event_cases() -> list[Any]:
    return [
        pytest.param(set_clause, value, id=name)
        for name, vendors, set_clause, value in EVENT_CASES
        if vendors in ("both", "postgresql")
    ]


@postgresql_only
@pytest.mark.parametrize(("set_clause", "value"), _event_cases())
def test_an_altered_event_gets_the_row_by_row_report(
    make_resident: Any, signing_keys: Any, row_by_row: list[int], set_clause: str, value: Any
) -> None:
    events = fill(make_resident, 8)
    tree_head_sign()
    fill(make_resident, 3)  # pending after the altered row
    target = events[5]
    params = [value(target) if callable(value) else value] if "%s" in set_clause else []
    alter(f"UPDATE consent_ledgerevent SET {set_clause} WHERE id = %s", [*params, target.id])
    expected = serial()
    assert not expected.ok
    for jobs in (1, 2):
        row_by_row.clear()
        result = ledger.verify(jobs=jobs)
        assert summary(result) == summary(expected)
        assert row_by_row == [1]


OTHER_CASES = [
    ("node-altered", 'UPDATE consent_merklenode SET hash = %s WHERE level = 1 AND "index" = 1', [bytes(32)]),
    ("node-short", 'UPDATE consent_merklenode SET hash = %s WHERE level = 2 AND "index" = 0', [b"\x01"]),
    ("node-deleted", 'DELETE FROM consent_merklenode WHERE level = 1 AND "index" = 2', []),
    (
        "node-upper-altered",
        'UPDATE consent_merklenode SET hash = %s WHERE level = 3 AND "index" = 0',
        [bytes(32)],
    ),
    ("event-deleted", "DELETE FROM consent_ledgerevent WHERE seq = 6", []),
    ("last-event-deleted", "DELETE FROM consent_ledgerevent WHERE seq = 10", []),
    ("tree-head-root", "UPDATE consent_treehead SET root_hash = %s", [bytes(32)]),
    ("tree-head-size", "UPDATE consent_treehead SET tree_size = tree_size - 1", []),
    ("head-root", "UPDATE consent_ledgerhead SET root_hash = %s", [bytes(32)]),
    ("head-size", "UPDATE consent_ledgerhead SET size = size + 1", []),
    ("counter-ahead", "UPDATE consent_ledgersequence SET next_seq = next_seq + 5", []),
    ("purpose-renamed", "UPDATE consent_purpose SET code = code || '-x'", []),
    ("notice-digest", "UPDATE consent_privacynotice SET content_sha256 = %s", ["0" * 64]),
]


@postgresql_only
@pytest.mark.parametrize(("sql", "params"), [pytest.param(s, p, id=n) for n, s, p in OTHER_CASES])
def test_altered_nodes_heads_and_references_get_the_row_by_row_report(
    make_resident: Any, signing_keys: Any, row_by_row: list[int], sql: str, params: list[Any]
) -> None:
    fill(make_resident, 9)
    tree_head_sign()
    fill(make_resident, 2)
    alter(sql, params)
    expected = serial()
    assert not expected.ok
    for jobs in (1, 2):
        row_by_row.clear()
        result = ledger.verify(jobs=jobs)
        assert summary(result) == summary(expected)
        assert row_by_row == [1]


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite")
def test_sqlite_verifies_row_by_row_whatever_the_jobs(
    make_resident: Any, signing_keys: Any, row_by_row: list[int]
) -> None:
    fill(make_resident, 5)
    tree_head_sign()
    result = ledger.verify(jobs=2)
    assert result.ok and row_by_row == [1]


@postgresql_only
@pytest.mark.parametrize(
    "actor_id",
    ['a "quoted" id', "back\\slash", "tab\there", "bell\x07"],
    ids=["quote", "backslash", "tab", "bell"],
)
def test_characters_json_escapes_go_to_the_row_by_row_verifier(
    make_resident: Any, signing_keys: Any, row_by_row: list[int], actor_id: str
) -> None:
    # PostgreSQL hashes the entry it writes; an actor id with a character that to_json escapes
    # (and COPY would have escaped again when Python hashed the line) is left to the row-by-row
    # verifier, even when its leaf is the hash of the entry Python builds from the row.
    fill(make_resident, 3)
    tree_head_sign()
    append_pending(make_resident, 2)  # pending: no tree head covers the row altered below
    event = LedgerEvent.objects.order_by("-seq").first()
    assert event is not None
    event.actor_id = actor_id
    leaf = merkle.leaf_hash(ledger.event_entry_bytes(event))
    alter(
        "UPDATE consent_ledgerevent SET actor_id = %s, leaf_hash = %s WHERE id = %s",
        [actor_id, leaf, event.id],
    )
    for jobs in (1, 2):
        result = ledger.verify(jobs=jobs)
        assert row_by_row, "the scan accepted a row it must leave to the row-by-row verifier"
        assert summary(result) == summary(serial())
        row_by_row.clear()


# Ranges of 8 events: the stored nodes of levels 1-3 are checked inside each range's statement
# (set-based: the leaves and the nodes end to end, each at its expected position), those above
# by the parent.
@pytest.fixture
def ranges_of_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "_RANGE_MIN_LEVEL", 3)
    monkeypatch.setattr(ledger, "_RANGE_MAX_LEVEL", 3)


@postgresql_only
@pytest.mark.parametrize(("batches", "pending"), [((8,), 0), ((16, 3), 0), ((11, 8), 2)])
def test_ranges_with_their_nodes_inside_accept_an_intact_ledger(
    make_resident: Any,
    signing_keys: Any,
    row_by_row: list[int],
    ranges_of_eight: None,
    batches: tuple[int, ...],
    pending: int,
) -> None:
    for count in batches:
        fill(make_resident, count)
        tree_head_sign()
    append_pending(make_resident, pending)
    for jobs in (1, 2):
        result = ledger.verify(jobs=jobs)
        assert result.ok and not row_by_row, result.problems
        assert summary(result) == summary(serial())
        row_by_row.clear()  # serial() ran it


INSIDE_CASES = [
    (
        "level-1-altered",
        'UPDATE consent_merklenode SET hash = %s WHERE level = 1 AND "index" = 5',
        [bytes(32)],
    ),
    (
        "level-2-altered",
        'UPDATE consent_merklenode SET hash = %s WHERE level = 2 AND "index" = 2',
        [bytes(32)],
    ),
    (
        "level-3-altered",
        'UPDATE consent_merklenode SET hash = %s WHERE level = 3 AND "index" = 1',
        [bytes(32)],
    ),
    ("level-2-short", 'UPDATE consent_merklenode SET hash = %s WHERE level = 2 AND "index" = 3', [bytes(31)]),
    ("level-1-long", 'UPDATE consent_merklenode SET hash = %s WHERE level = 1 AND "index" = 4', [bytes(33)]),
    ("level-1-deleted", 'DELETE FROM consent_merklenode WHERE level = 1 AND "index" = 6', []),
    ("level-3-deleted", 'DELETE FROM consent_merklenode WHERE level = 3 AND "index" = 1', []),
    (
        "level-1-swapped",
        'UPDATE consent_merklenode SET hash = CASE "index" WHEN 4 THEN (SELECT hash FROM consent_merklenode '
        'WHERE level = 1 AND "index" = 5) ELSE (SELECT hash FROM consent_merklenode WHERE level = 1 AND '
        '"index" = 4) END WHERE level = 1 AND "index" IN (4, 5)',
        [],
    ),
    (
        "level-1-moved",
        'UPDATE consent_merklenode SET "index" = 1000 WHERE level = 1 AND "index" = 7',
        [],
    ),
    ("leaf-long", "UPDATE consent_ledgerevent SET leaf_hash = %s WHERE seq = 9", [bytes(33)]),
    (
        "leaves-swapped",
        "UPDATE consent_ledgerevent SET leaf_hash = CASE seq WHEN 9 THEN (SELECT leaf_hash FROM "
        "consent_ledgerevent WHERE seq = 10) ELSE (SELECT leaf_hash FROM consent_ledgerevent WHERE seq = 9) "
        "END WHERE seq IN (9, 10)",
        [],
    ),
    ("event-deleted-inside", "DELETE FROM consent_ledgerevent WHERE seq = 12", []),
]


@postgresql_only
@pytest.mark.parametrize(("sql", "params"), [pytest.param(s, p, id=n) for n, s, p in INSIDE_CASES])
def test_nodes_and_leaves_altered_inside_a_range_get_the_row_by_row_report(
    make_resident: Any,
    signing_keys: Any,
    row_by_row: list[int],
    ranges_of_eight: None,
    sql: str,
    params: list[Any],
) -> None:
    fill(make_resident, 17)
    tree_head_sign()
    fill(make_resident, 2)
    alter(sql, params)
    expected = serial()
    assert not expected.ok
    for jobs in (1, 2):
        row_by_row.clear()
        result = ledger.verify(jobs=jobs)
        assert summary(result) == summary(expected)
        assert row_by_row == [1]


@pytest.mark.parametrize(
    "partner",
    ['un "partenaire"', "anti\\slash", "tab\there", "bell\x07"],
    ids=["quote", "backslash", "tab", "bell"],
)
def test_a_group_whose_text_holds_a_character_json_escapes_is_refused(partner: str) -> None:
    # The range statement writes the tail's texts between double quotes, which is their JSON
    # string only without such a character: the whole group goes to the row-by-row verifier.
    shapes = ledger._LeanShapes(ledger._reference_of({7: "statistiques"}, {}))
    sound = ("given", "statistiques", None, None, "", "web_form", "resident", "partenaire", 7)
    assert shapes.get(sound) is not None
    assert shapes.get((*sound[:7], partner, 7)) is None
    assert shapes.get(("given", partner, None, None, "", "web_form", "resident", "", 7)) is None
