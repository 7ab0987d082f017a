"""bench/generate.py writes a ledger that verifies (issue 14, "At scale").

PostgreSQL only. The generator builds the rows inside PostgreSQL (INSERT … SELECT over
generate_series): each event's canonical entry is concatenated in SQL from a template cut out
of `consent.ledger.entry_bytes`, its leaf hash is PostgreSQL's SHA-256 of it, and the Merkle
nodes are built level by level in SQL. These tests check the result with the application's own
Python: every leaf against `merkle.leaf_hash(ledger.event_entry_bytes(event))`, the head's root
against the root of the leaves, `ledger_verify`, proofs and consistency proofs, the current
states against the events, the accounts' derived columns; and each way the generator refuses.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from bench import generate as generator
from bench.generate import entry_template, generate
from consent import crypto, ledger, merkle
from consent.models import ConsentState, LedgerEvent, LedgerHead, Purpose, Subject, TreeHead
from consent.selectors import consistency_proof, event_proof, ledger_verify
from consent.services import consent_record
from identity.keys import signing_keys_ensure
from identity.models import BrowserSession, User
from identity.oidc.models import AccessToken, RefreshToken

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the generator writes with PostgreSQL"),
]

# Odd sizes: a last block of events shorter than the residents, a tree that is not perfect.
RESIDENTS, EVENTS = 301, 2_003


def _leaves() -> list[bytes]:
    return [bytes(leaf) for leaf in LedgerEvent.objects.order_by("seq").values_list("leaf_hash", flat=True)]


def _schema(tables: tuple[str, ...]) -> tuple[list[Any], list[Any]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = ANY(%s::regclass[]) ORDER BY 1, 2",
            [list(tables)],
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated "
            "FROM pg_constraint "
            "WHERE conrelid = ANY(%s::regclass[]) OR confrelid = ANY(%s::regclass[]) ORDER BY 1, 2",
            [list(tables), list(tables)],
        )
        return indexes, cursor.fetchall()


def _check_ledger(size: int) -> None:
    """The stored ledger as the application's Python sees it."""
    result = ledger_verify()
    assert result.ok, result.first_problem
    assert result.size == size
    events = list(LedgerEvent.objects.order_by("seq"))
    assert [event.seq for event in events] == list(range(size))
    for event in events:  # byte for byte the entry that `ledger.append` would have hashed
        assert bytes(event.leaf_hash) == merkle.leaf_hash(ledger.event_entry_bytes(event)), event.seq
    head = LedgerHead.objects.get(pk=1)
    assert head.size == size
    assert bytes(head.root_hash) == merkle.root_from_leaves(_leaves())
    signed = TreeHead.objects.order_by("-tree_size").first()
    assert (
        signed is not None and signed.tree_size == size and bytes(signed.root_hash) == bytes(head.root_hash)
    )
    for seq in (0, 1, size // 2, size - 2, size - 1):  # receipts' proofs against the signed head
        proof = event_proof(event=events[seq])
        path = [bytes.fromhex(digest) for digest in proof["inclusion_path"]]
        assert merkle.verify_inclusion(bytes(events[seq].leaf_hash), seq, size, path, bytes(head.root_hash))


def test_a_generation_with_odd_sizes_verifies(signing_keys: Any) -> None:
    figures = generate(residents=RESIDENTS, events=EVENTS, seed="odd-sizes")
    assert figures["ledger_events"] == EVENTS
    assert figures["merkle_nodes"] == EVENTS - EVENTS.bit_count()  # every completed node, once
    _check_ledger(EVENTS)
    # The event ids: version-4 UUIDs, all different.
    ids = list(LedgerEvent.objects.values_list("id", flat=True))
    assert len(set(ids)) == EVENTS and {event_id.version for event_id in ids} == {4}
    # Resident r gets events r, r + R, …; event n is on slot (n // R) % count.
    purposes = list(Purpose.objects.filter(is_active=True).order_by("id"))
    first = User.objects.get(email=f"bench-{figures['run']}-0@bench.example")
    subject = Subject.objects.get(user=first)
    mine = list(LedgerEvent.objects.filter(subject=subject).order_by("seq"))
    assert [event.seq for event in mine] == list(range(0, EVENTS, RESIDENTS))
    assert [event.purpose_id for event in mine] == [purposes[j % len(purposes)].id for j in range(len(mine))]
    times = list(LedgerEvent.objects.order_by("seq").values_list("occurred_at", flat=True))
    assert times == sorted(times)


def test_the_current_states_are_the_last_events(signing_keys: Any) -> None:
    generate(residents=RESIDENTS, events=EVENTS, seed="states")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM (
                SELECT DISTINCT ON (subject_id, purpose_id)
                       subject_id, purpose_id, id, event_type, valid_until
                FROM consent_ledgerevent ORDER BY subject_id, purpose_id, seq DESC) AS last
            FULL JOIN consent_consentstate s
                   ON s.subject_id = last.subject_id AND s.purpose_id = last.purpose_id
            WHERE s.id IS NULL OR last.id IS NULL OR s.event_id <> last.id OR s.status <> last.event_type
               OR s.valid_until IS DISTINCT FROM last.valid_until
            """
        )
        assert cursor.fetchone()[0] == 0
    assert ConsentState.objects.count() > RESIDENTS
    # Some given with a lifetime (valid_until set), some withdrawn.
    assert ConsentState.objects.filter(status="given", valid_until__isnull=False).exists()
    assert ConsentState.objects.filter(status="withdrawn", valid_until__isnull=True).exists()


def test_the_accounts_sessions_tokens_and_subjects(signing_keys: Any) -> None:
    figures = generate(residents=50, events=0, seed="accounts")
    users = User.objects.filter(email__startswith=f"bench-{figures['run']}-")
    assert users.count() == 50 and {user.id.version for user in users} == {4}
    user = users.get(email=f"bench-{figures['run']}-7@bench.example")
    assert user.given_name == "Prénom7" and user.has_usable_password()
    session = BrowserSession.objects.get(user=user)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", session.sid) and session.ended_at is None
    assert BrowserSession.objects.filter(sid=session.sid).count() == 1
    access = AccessToken.objects.get(user=user)
    refresh = RefreshToken.objects.get(user=user)
    assert access.sid == refresh.sid == session.sid and refresh.access_token_id == access.pk
    for token in (access, refresh):
        assert token.token_checksum == hashlib.sha256(token.token.encode()).hexdigest()
    assert access.token != refresh.token
    subject = Subject.objects.get(user=user)
    assert len(crypto.unwrap_key(subject.wrapped_key, subject.id)) == 32  # its own key, wrapped
    assert LedgerEvent.objects.count() == 0 and LedgerHead.objects.get(pk=1).size == 0


def test_an_existing_ledger_is_continued(signing_keys: Any, make_resident: Any) -> None:
    resident = make_resident("continue@example.org")
    for event_type in ("given", "withdrawn", "given"):  # three events: an odd start
        consent_record(
            user=resident,
            purpose_code="service-news-email",
            event_type=event_type,
            collection_method="web_form",
        )
    ledger.integrate_all()
    ledger.tree_head_create()
    before = TreeHead.objects.order_by("-tree_size").first()
    assert before is not None and before.tree_size == 3
    consent_record(  # appended, not yet integrated: the generator integrates it first
        user=resident, purpose_code="audience-measurement", event_type="given", collection_method="web_form"
    )
    generate(residents=13, events=1_001, seed="continue", rebuild_indexes=True)
    _check_ledger(1_005)
    after = TreeHead.objects.order_by("-tree_size").first()
    assert after is not None
    proof = consistency_proof(first=before.tree_size, second=after.tree_size)
    assert merkle.verify_consistency(
        before.tree_size, after.tree_size, bytes(before.root_hash), bytes(after.root_hash), proof
    )
    # And the real append path carries on after it.
    consent_record(
        user=resident, purpose_code="service-news-email", event_type="withdrawn", collection_method="web_form"
    )
    ledger.integrate_all()
    assert ledger_verify().ok


def test_the_indexes_and_keys_are_rebuilt_as_they_were(signing_keys: Any) -> None:
    tables = generator._LEDGER_TABLES + generator._ACCOUNT_TABLES
    schema = _schema(tables)
    generate(residents=17, events=999, seed="indexes", rebuild_indexes=True)
    assert _schema(tables) == schema
    _check_ledger(999)


def test_the_entry_template_is_entry_bytes() -> None:
    row = {
        "event_type": "given",
        "purpose_code": 'pürpose-"quoted"',
        "notice_id": 12,
        "notice_version": 3,
        "notice_sha256": "ab" * 32,
        "collection_method": "web_form",
        "actor_type": "resident",
        "actor_id": "",
        "partner_client_id": "",
        "valid_until": "set",
        "linked_from": None,
        "details_ciphertext": None,
    }
    pieces = entry_template(row)
    assert [sql for _literal, sql in pieces][-1] == ""
    values = {
        "e.id::text": "0f0f0f0f-1111-4222-8333-444444444444",
        "e.seq::text": "42",
        "e.subject_id::text": "1f1f1f1f-1111-4222-8333-444444444444",
        generator._ENTRY_TIME.format("e.occurred_at"): "2026-01-02T03:04:05.000006Z",
        generator._ENTRY_TIME.format("e.valid_until"): "2026-07-02T03:04:05.000006Z",
    }
    text = "".join(literal + values.get(sql, "") for literal, sql in pieces)
    expected = dict(row)
    expected.update(
        id=uuid.UUID(values["e.id::text"]),
        seq=42,
        subject_id=uuid.UUID(values["e.subject_id::text"]),
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        valid_until=datetime(2026, 7, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    assert text.encode() == ledger.entry_bytes(expected)


def test_an_entry_form_without_a_value_is_refused(monkeypatch: Any) -> None:
    """A change of the entry's form that the template cannot follow (a value no longer written
    as is, or written twice) stops the generator instead of writing leaves that do not verify."""
    row = {
        "event_type": "given",
        "purpose_code": "p",
        "notice_id": None,
        "notice_version": None,
        "notice_sha256": "",
        "collection_method": "web_form",
        "actor_type": "resident",
        "actor_id": "",
        "partner_client_id": "",
        "valid_until": None,
        "linked_from": None,
        "details_ciphertext": None,
    }
    real = ledger.entry_bytes
    monkeypatch.setattr(ledger, "entry_bytes", lambda r: real(r).replace(str(r["seq"]).encode(), b"0"))
    with pytest.raises(RuntimeError, match="seq is not found once"):
        entry_template(row)
    monkeypatch.setattr(ledger, "entry_bytes", lambda r: real(r) + str(r["subject_id"]).encode())
    with pytest.raises(RuntimeError, match="subject is not found once"):
        entry_template(row)


def test_a_database_not_in_utf8_is_refused(signing_keys: Any, monkeypatch: Any) -> None:
    class Cursor:
        def __init__(self, server: str, client: str) -> None:
            self.row = (server, client)

        def execute(self, sql: str) -> None:
            pass

        def fetchone(self) -> tuple[str, str]:
            return self.row

    assert generator.encoding_problem(Cursor("UTF8", "UTF8")) == ""
    assert "SQL_ASCII" in generator.encoding_problem(Cursor("SQL_ASCII", "UTF8"))
    assert "LATIN1" in generator.encoding_problem(Cursor("UTF8", "LATIN1"))
    with connection.cursor() as cursor:
        assert generator.encoding_problem(cursor.cursor) == ""  # the test database
    monkeypatch.setattr(generator, "encoding_problem", lambda _cursor: "the database's encoding is SQL_ASCII")
    users = User.objects.count()
    with pytest.raises(RuntimeError, match="SQL_ASCII"):
        generate(residents=3, events=10, seed="encoding")
    assert User.objects.count() == users and LedgerEvent.objects.count() == 0


def test_a_missing_merkle_child_stops_the_generator(signing_keys: Any) -> None:
    generate(residents=3, events=6, seed="missing")
    with connection.cursor() as cursor:
        raw = cursor.cursor
        # Leaves 6..15 are not there: the level-1 nodes over them cannot be made.
        with pytest.raises(RuntimeError, match="Merkle level 1: 0 nodes made of 5"):
            generator._merkle_nodes(raw, 6, 16)
        head = LedgerHead.objects.get(pk=1)
        assert b"".join(generator._frontier_read(raw, 6)) == bytes(head.frontier)
        with pytest.raises(RuntimeError, match="subtree of level 4 at leaf 0 is not stored"):
            generator._frontier_read(raw, 16)
        # A stored node missing (leaves 4 and 5's): the next generation cannot complete level 2.
        raw.execute("SET LOCAL session_replication_role = replica")  # past the append-only trigger
        raw.execute('DELETE FROM consent_merklenode WHERE level = 1 AND "index" = 2')
        raw.execute("SET LOCAL session_replication_role = DEFAULT")
    with pytest.raises(RuntimeError, match="Merkle level 2: 0 nodes made of 1"):
        generate(residents=1, events=2, seed="missing-more")
    assert LedgerEvent.objects.count() == 6  # nothing of the failed generation stays


@pytest.mark.django_db(transaction=True)
def test_two_connections_write_the_same_database() -> None:
    """The CLI's default: the accounts on a second connection, committed with the ledger."""
    signing_keys_ensure()
    figures = generate(residents=53, events=1_009, seed="two-connections", connections=2)
    assert figures["users"] == 53 and figures["subjects"] == 53
    _check_ledger(1_009)
    run = figures["run"]
    user = User.objects.get(email=f"bench-{run}-52@bench.example")
    subject = Subject.objects.get(user=user)
    # The ledger's rows name the subjects the other connection wrote.
    assert LedgerEvent.objects.filter(subject=subject).count() == len(range(52, 1_009, 53))
    assert ConsentState.objects.filter(subject=subject).count() == 4
    assert not Subject.objects.exclude(user__email__startswith=f"bench-{run}-").exists()


@pytest.mark.django_db(transaction=True)
def test_two_connections_a_failure_in_either_leaves_nothing(monkeypatch: Any) -> None:
    signing_keys_ensure()

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("refused here")

    # The accounts' connection fails (Python, while its rows are being sent).
    monkeypatch.setattr(crypto, "new_wrapped_key", refuse)
    with pytest.raises(RuntimeError, match="refused here"):
        generate(residents=20, events=100, seed="fail-accounts", connections=2)
    monkeypatch.undo()
    assert not User.objects.filter(email__startswith="bench-").exists()
    assert LedgerEvent.objects.count() == 0 and LedgerHead.objects.get(pk=1).size == 0
    # The ledger's connection fails (after the accounts were written on the other).
    monkeypatch.setattr(generator, "_frontier_read", refuse)
    with pytest.raises(RuntimeError, match="refused here"):
        generate(residents=20, events=100, seed="fail-ledger", connections=2)
    assert not User.objects.filter(email__startswith="bench-").exists()
    assert not Subject.objects.exists() and LedgerEvent.objects.count() == 0
    with pytest.raises(ValueError, match="one connection or two"):
        generate(residents=20, events=100, connections=3)
