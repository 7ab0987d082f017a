"""Append-only storage, tamper detection by verify_ledger, and database-side proofs."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from connectors.management.commands.outbox_worker import Command as OutboxWorker
from consent import ledger, merkle
from consent.models import LedgerEvent, LedgerImmutable, MerkleNode, TreeHead
from consent.selectors import consistency_proof, inclusion_proof, ledger_verify, verify_tree_head
from consent.services import consent_record, ledger_integrate, tree_head_sign

PURPOSES = ["personalisation-declared", "personalisation-browsing", "service-news-email"]


def fill(make_resident: Any, count: int) -> list[LedgerEvent]:
    residents = [make_resident() for _ in range(3)]
    events = []
    for i in range(count):
        events.append(
            consent_record(
                user=residents[i % 3],
                purpose_code=PURPOSES[i % len(PURPOSES)],
                event_type=("given", "refused", "withdrawn")[i % 3],
                collection_method="web_form",
                details={"note": f"évènement {i}"} if i % 4 == 0 else None,
            )
        )
    return events


def run_verify(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("verify_ledger", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def db_uuid(value: Any) -> Any:
    """A UUID as the backend stores it (SQLite: 32 hex characters)."""
    return value.hex if connection.vendor == "sqlite" else value


def disable_append_only_triggers() -> None:
    """Only a table owner/superuser can do this; the test database user is one."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Deferred foreign-key checks of this transaction must run before ALTER TABLE.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE consent_ledgerevent DISABLE TRIGGER consent_ledgerevent_append_only")
        else:
            cursor.execute("DROP TRIGGER consent_ledgerevent_no_update")
            cursor.execute("DROP TRIGGER consent_ledgerevent_no_delete")


# --- Append-only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_ledgerevent SET event_type = 'given'",
        "DELETE FROM consent_ledgerevent",
        "UPDATE consent_merklenode SET hash = hash",
        "DELETE FROM consent_merklenode",
        "UPDATE consent_treehead SET tree_size = 0",
        "DELETE FROM consent_treehead",
    ],
)
def test_the_database_refuses_update_and_delete_on_ledger_tables(
    make_resident: Any, ledger_ready: Any, statement: str
) -> None:
    fill(make_resident, 4)
    tree_head_sign()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert ledger_verify().ok


def test_the_orm_refuses_changes(make_resident: Any, ledger_ready: Any) -> None:
    event = fill(make_resident, 2)[0]
    event.event_type = "refused"
    with pytest.raises(LedgerImmutable):
        event.save()
    with pytest.raises(LedgerImmutable):
        event.delete()
    with pytest.raises(LedgerImmutable):
        LedgerEvent.objects.filter(pk=event.pk).update(event_type="refused")
    with pytest.raises(LedgerImmutable):
        LedgerEvent.objects.all().delete()
    head = tree_head_sign()
    with pytest.raises(LedgerImmutable):
        head.save()
    with pytest.raises(LedgerImmutable):
        TreeHead.objects.all().delete()
    with pytest.raises(LedgerImmutable):
        MerkleNode.objects.all().update(index=0)
    assert LedgerEvent.objects.get(pk=event.pk).event_type == "given"


# --- Sequence and Merkle state ----------------------------------------------------------------


def test_sequence_is_gap_free_and_the_head_root_is_the_tree_root(
    make_resident: Any, ledger_ready: Any
) -> None:
    events = fill(make_resident, 23)
    assert [e.seq for e in LedgerEvent.objects.order_by("seq")] == list(range(23))
    leaves = [merkle.leaf_hash(ledger.event_entry_bytes(e)) for e in LedgerEvent.objects.order_by("seq")]
    assert leaves == [bytes(e.leaf_hash) for e in events]
    # Appended, pending: the sequencer has not put them into the tree yet.
    assert ledger.read_head().size == 0 and ledger.pending_count() == 23
    assert MerkleNode.objects.count() == 0
    done = ledger.integrate()
    assert (done.integrated, done.size, ledger.pending_count()) == (23, 23, 0)
    assert done.tree_head is not None and done.tree_head.tree_size == 23
    assert bytes(ledger.read_head().root_hash) == merkle.root_from_leaves(leaves)
    assert bytes(done.tree_head.root_hash) == merkle.root_from_leaves(leaves)
    # n leaves complete n - popcount(n) interior nodes.
    assert MerkleNode.objects.count() == 23 - (23).bit_count()


def test_database_proofs_verify_against_signed_tree_heads(make_resident: Any, ledger_ready: Any) -> None:
    fill(make_resident, 13)
    first = tree_head_sign()
    fill(make_resident, 8)
    second = tree_head_sign()
    assert verify_tree_head(first) and verify_tree_head(second)
    leaves = [bytes(h) for h in LedgerEvent.objects.order_by("seq").values_list("leaf_hash", flat=True)]
    for index in range(first.tree_size):
        path = inclusion_proof(leaf_index=index, tree_size=first.tree_size)
        assert merkle.verify_inclusion(leaves[index], index, first.tree_size, path, bytes(first.root_hash))
    for index in (0, 12, 13, 20):
        path = inclusion_proof(leaf_index=index, tree_size=second.tree_size)
        assert merkle.verify_inclusion(leaves[index], index, second.tree_size, path, bytes(second.root_hash))
    proof = consistency_proof(first=first.tree_size, second=second.tree_size)
    assert merkle.verify_consistency(
        first.tree_size, second.tree_size, bytes(first.root_hash), bytes(second.root_hash), proof
    )
    # Any pair of sizes, not only signed ones.
    for m in range(0, 22):
        proof = consistency_proof(first=m, second=21)
        assert merkle.verify_consistency(m, 21, ledger.root_at(m), ledger.root_at(21), proof)
    with pytest.raises(ledger.ProofError):
        inclusion_proof(leaf_index=0, tree_size=22)
    with pytest.raises(ledger.ProofError):
        inclusion_proof(leaf_index=21, tree_size=21)


def test_a_tree_head_with_a_forged_root_does_not_verify(make_resident: Any, ledger_ready: Any) -> None:
    fill(make_resident, 5)
    genuine = tree_head_sign()
    forged = TreeHead.objects.create(
        tree_size=genuine.tree_size,
        root_hash=bytes(32),
        timestamp=genuine.timestamp,
        kid=genuine.kid,
        signature=genuine.signature,
    )
    assert verify_tree_head(genuine)
    assert not verify_tree_head(forged)
    result = ledger_verify()
    assert not result.ok
    assert any(p.tree_head_id == forged.pk for p in result.problems)


# --- verify_ledger ----------------------------------------------------------------------------


def test_verify_ledger_passes_on_an_intact_ledger(make_resident: Any, ledger_ready: Any) -> None:
    fill(make_resident, 30)
    tree_head_sign()
    fill(make_resident, 5)
    tree_head_sign()
    out, err = run_verify("--every", "10")
    assert "ledger OK: 35 events" in out
    assert "2 signed tree heads checked" in out
    assert "verify_ledger: 10/35 events" in err and "verify_ledger: 35/35 events" in err


def test_pending_events_are_verified_reported_and_integrated_by_the_sequencer(
    make_resident: Any, ledger_ready: Any
) -> None:
    fill(make_resident, 9)
    tree_head_sign()
    fill(make_resident, 4)
    out, _err = run_verify()
    assert "ledger OK: 13 events" in out and "4 appended events pending integration" in out
    result = ledger_verify()
    assert result.ok and (result.size, result.pending) == (13, 4)
    # The sequencer's step: batches of 3, one signed tree head each. (`manage.py
    # ledger_sequencer` runs it in a loop: tests/consent/test_concurrency_postgres.py.)
    heads = TreeHead.objects.count()
    first, second, third = (ledger_integrate(limit=3) for _ in range(3))
    assert [(done.integrated, done.size) for done in (first, second, third)] == [(3, 12), (1, 13), (0, 13)]
    assert third.tree_head is None
    assert TreeHead.objects.count() == heads + 2 and ledger.read_head().size == 13
    result = ledger_verify()
    assert result.ok and (result.size, result.pending) == (13, 0)
    # The outbox worker runs the same step at each poll.
    fill(make_resident, 2)
    worker = OutboxWorker(stdout=io.StringIO())
    assert worker.integrate() == 2
    assert ledger.read_head().size == 15 and ledger.pending_count() == 0
    # A pending row altered before its integration: nothing integrated, nothing signed.
    fill(make_resident, 1)
    disable_append_only_triggers()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE consent_ledgerevent SET actor_id = 'intrus' WHERE seq = 15")
    heads = TreeHead.objects.count()
    with pytest.raises(ledger.LedgerTampered, match="#15"):
        ledger_integrate()
    assert worker.integrate() == 0  # logged; the worker goes on relaying messages
    assert TreeHead.objects.count() == heads and ledger.read_head().size == 15


def test_verify_ledger_names_an_altered_event(make_resident: Any, ledger_ready: Any) -> None:
    events = fill(make_resident, 12)
    tree_head_sign()
    target = events[7]
    disable_append_only_triggers()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE consent_ledgerevent SET event_type = 'given' WHERE seq = %s", [target.seq])
        assert target.event_type != "given"
    with pytest.raises(CommandError) as failure:
        run_verify()
    message = str(failure.value)
    assert "seq 7" in message and str(target.id) in message and "altered" in message
    result = ledger_verify()
    assert result.first_problem is not None and result.first_problem.seq == 7


def test_verify_ledger_detects_an_event_altered_together_with_its_leaf_hash(
    make_resident: Any, ledger_ready: Any
) -> None:
    events = fill(make_resident, 12)
    tree_head_sign()
    target = events[5]
    row = ledger.event_row(target)
    # A column no other row or table vouches for (the purpose code is checked against the
    # purpose the row points to: tests/security/test_ledger_tampering.py).
    row["actor_id"] = "someone-else"
    forged_leaf = merkle.leaf_hash(ledger.entry_bytes(row))
    disable_append_only_triggers()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE consent_ledgerevent SET actor_id = %s, leaf_hash = %s WHERE seq = 5",
            [row["actor_id"], forged_leaf],
        )
    result = ledger_verify()
    assert not result.ok
    # The row now hashes consistently, but the signed root at size 12 no longer matches.
    assert any(p.kind == "tree_head" and "#0 and #11" in p.detail for p in result.problems)
    # The stored Merkle node above the forged leaf no longer matches either (checked since
    # issue 9); the command names the first problem by position: that node, over #0..#7.
    assert any(p.kind == "node" and "#0..#7" in p.detail for p in result.problems)
    with pytest.raises(CommandError, match=r"signed tree head|Merkle node"):
        run_verify()


def test_verify_ledger_names_a_deleted_event(make_resident: Any, ledger_ready: Any) -> None:
    events = fill(make_resident, 12)
    tree_head_sign()
    disable_append_only_triggers()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM consent_consentstate WHERE event_id = %s", [db_uuid(events[4].id)])
        cursor.execute("DELETE FROM consent_ledgerevent WHERE seq = 4")
    with pytest.raises(CommandError) as failure:
        run_verify()
    assert "event #4 is missing" in str(failure.value)
    assert "seq 4" in str(failure.value)


def test_verify_ledger_notices_the_last_event_deleted(make_resident: Any, ledger_ready: Any) -> None:
    events = fill(make_resident, 6)
    disable_append_only_triggers()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM consent_consentstate WHERE event_id = %s", [db_uuid(events[5].id)])
        cursor.execute("DELETE FROM consent_ledgerevent WHERE seq = 5")
    with pytest.raises(CommandError, match="#5 onwards missing"):
        run_verify()


def test_sign_tree_head_if_changed_counts_pending_events(make_resident: Any, ledger_ready: Any) -> None:
    fill(make_resident, 3)
    tree_head_sign()
    out = io.StringIO()
    call_command("sign_tree_head", "--if-changed", stdout=out)
    assert "unchanged: size 3" in out.getvalue()
    fill(make_resident, 2)  # pending: the head row still says 3
    out = io.StringIO()
    call_command("sign_tree_head", "--if-changed", stdout=out)
    assert "size 5" in out.getvalue() and ledger.read_head().size == 5
