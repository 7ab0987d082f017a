"""Several OS processes append to the ledger at once (PostgreSQL), while the sequencer
integrates: one consistent log; and a writer killed in the middle of an append loses nothing."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from consent import ledger, merkle
from consent.models import LedgerEvent, MerkleNode, PrivacyNotice, Purpose, TreeHead
from consent.selectors import event_proof, ledger_verify, verify_tree_head
from consent.services import consent_record, notice_publish, purpose_create, tree_head_sign
from identity.keys import signing_keys_ensure

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
PER_WORKER = 60


def ensure_catalogue() -> None:
    """A transactional test may run after another one flushed the migration-seeded rows."""
    for code in ("personalisation-declared", "service-news-email", "personalisation-browsing"):
        if not Purpose.objects.filter(code=code).exists():
            purpose_create(
                code=code,
                title_fr=code,
                title_en=code,
                description_fr="-",
                description_en="-",
                consent_lifetime_days=183,
            )
    if not PrivacyNotice.objects.exists():
        notice_publish(purpose=None, text_fr="Notice", text_en="Notice", material=False)


def database_url() -> str:
    params = connection.settings_dict
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return f"postgres://{params['USER']}{password}@{host}:{port}/{params['NAME']}"


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL (on SQLite one writer at a time is enforced by the file lock)",
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_processes_append_one_consistent_log(make_resident: Any) -> None:
    ensure_catalogue()
    signing_keys_ensure()
    residents = [make_resident() for _ in range(WORKERS * 2)]
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "consent" / "ledger_worker.py"),
                ",".join(str(r.pk) for r in residents[i * 2 : i * 2 + 2]),
                str(PER_WORKER),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    # A start barrier, not a wall-clock time: on a loaded machine a worker may take seconds
    # to start, and one that starts alone would append its whole share before the others.
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", (line, process.stderr.read() if process.stderr else "")
    # The sequencer runs beside the writers (as in the outbox worker), batches of 25.
    sequencer = subprocess.Popen(
        [sys.executable, "manage.py", "ledger_sequencer", "--batch-size", "25", "--interval", "0.05"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sequencer.stdout is not None
        line = sequencer.stdout.readline()
        assert line.strip() == "ledger sequencer ready", (
            line,
            sequencer.stderr.read() if sequencer.stderr else "",
        )
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            out, err = process.communicate(timeout=180)
            assert process.returncode == 0, err[-3000:]
            assert "appended" in out
    finally:
        sequencer.send_signal(signal.SIGTERM)
        sequencer_out, sequencer_err = sequencer.communicate(timeout=60)
    assert sequencer.returncode == 0, sequencer_err[-3000:]

    total = WORKERS * PER_WORKER
    seqs = list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(total))
    # Appends really interleaved: the first 30 events come from more than one worker.
    first_owners = set(LedgerEvent.objects.filter(seq__lt=30).values_list("subject__user_id", flat=True))
    assert len(first_owners) > 2

    result = ledger_verify()
    assert result.ok, result.problems
    assert result.size == total
    assert result.pending == ledger.pending_count()  # what the sequencer had not reached yet
    head = tree_head_sign()  # integrates the rest first
    assert verify_tree_head(head)
    assert head.tree_size == ledger.read_head().size == total and ledger.pending_count() == 0
    recomputed = merkle.root_from_leaves(
        merkle.leaf_hash(ledger.event_entry_bytes(event)) for event in LedgerEvent.objects.order_by("seq")
    )
    assert bytes(head.root_hash) == recomputed == bytes.fromhex(result.root_hash)
    # The sequencer integrated in batches, each with its own signed head, every one extending
    # the one before (no leaf lost, duplicated or moved between batches).
    assert "integrated=" in sequencer_out
    heads = list(TreeHead.objects.order_by("tree_size", "id"))
    assert len(heads) >= 2
    for before, after in itertools.pairwise(heads):
        assert verify_tree_head(after)
        proof = ledger.consistency_proof(before.tree_size, after.tree_size)
        assert merkle.verify_consistency(
            before.tree_size, after.tree_size, bytes(before.root_hash), bytes(after.root_hash), proof
        )
    # n leaves complete n - popcount(n) interior nodes, each stored once.
    assert MerkleNode.objects.count() == total - total.bit_count()
    # Every event is provable against the latest signed head.
    for event in LedgerEvent.objects.order_by("seq"):
        bundle = event_proof(event=event, tree_head=head)
        assert merkle.verify_inclusion(
            bytes(event.leaf_hash),
            event.seq,
            head.tree_size,
            [bytes.fromhex(h) for h in bundle["inclusion_path"]],
            bytes(head.root_hash),
        )
    after = ledger_verify()
    assert after.ok and after.pending == 0 and after.size == total, after.problems


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL (a writer process killed with its transaction open)",
)
@pytest.mark.django_db(transaction=True)
def test_a_writer_killed_between_append_and_integration_loses_nothing(make_resident: Any) -> None:
    ensure_catalogue()
    signing_keys_ensure()
    resident = make_resident()
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "consent" / "ledger_crash_worker.py"), str(resident.pk), "7"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        lines = [worker.stdout.readline().strip() for _ in range(2)]
        assert lines == ["appended", "holding"], (lines, worker.stderr.read() if worker.stderr else "")
        # Committed and visible to the gate, not yet in the tree.
        assert LedgerEvent.objects.count() == 7
        assert ledger.read_head().size == 0 and ledger.pending_count() == 7
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
    assert worker.returncode == -signal.SIGKILL

    pending = ledger_verify()
    assert pending.ok and (pending.size, pending.pending) == (7, 7), pending.problems
    done = ledger.integrate()
    assert (done.integrated, done.size) == (7, 7)
    assert done.tree_head is not None and verify_tree_head(done.tree_head)
    result = ledger_verify()
    assert result.ok and (result.size, result.pending) == (7, 0), result.problems
    assert bytes.fromhex(result.root_hash) == bytes(done.tree_head.root_hash)
    # The killed append took the counter and rolled back: the next one takes #7, no gap.
    event = consent_record(
        user=resident, purpose_code="service-news-email", event_type="given", collection_method="web_form"
    )
    assert event.seq == 7
    assert ledger.integrate().size == 8 and ledger_verify().ok
