"""Several decisions of one subject in one ledger write (issue 14): `consent_record_many` and
`ledger.append_many` write the rows K `consent_record` calls would write, all or nothing,
without a gap in the leaf indexes; concurrent batches keep one gapless, verifiable log."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import signals
from django.utils import timezone

from consent import crypto, ledger, merkle, services
from consent.gate import consent_granted_many
from consent.ledger import LedgerTampered
from consent.models import ConsentState, LedgerEvent, Subject
from consent.receipts import receipt_for_event, receipt_verify
from consent.selectors import consent_is_granted, event_proof, ledger_verify
from consent.services import ConsentError, UnknownPurpose, consent_record, consent_record_many
from identity.keys import signing_keys_ensure
from tests.consent.test_concurrency_postgres import database_url, ensure_catalogue

ROOT = Path(__file__).resolve().parents[2]
DECLARED, BROWSING, NEWS, AUDIENCE = (
    "personalisation-declared",
    "personalisation-browsing",
    "service-news-email",
    "audience-measurement",
)


class _Rollback(Exception):
    pass


def _rows(seqs: list[int]) -> list[dict[str, Any]]:
    rows = list(LedgerEvent.objects.filter(seq__in=seqs).order_by("seq").values())
    for row in rows:
        row["leaf_hash"] = bytes(row["leaf_hash"])
    return rows


def _states(subject_id: Any) -> list[dict[str, Any]]:
    """The subject's current-state rows but their surrogate ids (a PostgreSQL sequence is not
    rolled back: a state row inserted again gets a new id)."""
    rows = list(ConsentState.objects.filter(subject_id=subject_id).order_by("purpose_id").values())
    for row in rows:
        del row["id"]
    return rows


@pytest.mark.django_db
@pytest.mark.parametrize("browser", [False, True])
def test_a_batch_writes_the_rows_of_single_appends(
    ledger_ready: Any, make_resident: Any, monkeypatch: pytest.MonkeyPatch, browser: bool
) -> None:
    """Same instant, same event ids: the batch's events and states equal, column by column and
    leaf hash by leaf hash, those of one consent_record per decision (rolled back first, so that
    both start from the same counter and states)."""
    resident = make_resident()
    subject = {"browser_id": "b" * 22} if browser else {"user": resident}
    method = "cookie_widget" if browser else "web_form"
    # An existing subject and state (a renewal needs a grant), and one purpose decided before.
    consent_record(purpose_code=NEWS, event_type="given", collection_method=method, **subject)
    consent_record(purpose_code=DECLARED, event_type="refused", collection_method=method, **subject)
    decisions = [(NEWS, "renewed"), (BROWSING, "given"), (DECLARED, "withdrawn"), (AUDIENCE, "refused")]
    instant = timezone.now()
    monkeypatch.setattr(services.timezone, "now", lambda: instant)
    ids = [uuid.uuid4() for _ in decisions]

    def same_ids() -> None:
        numbered = iter(ids)
        monkeypatch.setattr(ledger, "new_event_id", lambda: next(numbered))

    first_seq = LedgerEvent.objects.count()
    seqs = list(range(first_seq, first_seq + len(decisions)))
    same_ids()
    with pytest.raises(_Rollback), transaction.atomic():
        singles = [
            consent_record(purpose_code=code, event_type=kind, collection_method=method, **subject)
            for code, kind in decisions
        ]
        single_rows, single_states = _rows(seqs), _states(singles[0].subject_id)
        raise _Rollback
    assert LedgerEvent.objects.count() == first_seq  # rolled back, the counter with it
    same_ids()
    events = consent_record_many(decisions=decisions, collection_method=method, **subject)
    assert [event.seq for event in events] == seqs
    assert [event.id for event in events] == ids
    batch_rows = _rows(seqs)
    assert len(batch_rows) == len(single_rows) == len(decisions)
    for single, batched in zip(single_rows, batch_rows, strict=True):
        assert single == batched
    assert _states(events[0].subject_id) == single_states
    for event, row in zip(events, batch_rows, strict=True):
        assert event.leaf_hash == row["leaf_hash"] == merkle.leaf_hash(ledger.entry_bytes(row))
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_batch_is_seen_by_the_gate_and_its_receipts_verify(ledger_ready: Any, make_resident: Any) -> None:
    resident = make_resident()
    evidence = {"paper_form": "A-17"}
    staff = get_user_model().objects.create_user(email="agent-b@example.org", password=None, is_staff=True)
    events = consent_record_many(
        decisions=[(DECLARED, "given"), (NEWS, "given"), (BROWSING, "refused")],
        collection_method="staff_on_behalf",
        user=resident,
        acting_user=staff,
        details=evidence,
    )
    assert consent_granted_many(user=resident, purpose_codes=[DECLARED, NEWS, BROWSING]) == {
        DECLARED: True,
        NEWS: True,
        BROWSING: False,
    }
    assert consent_is_granted(user=resident, purpose_code=NEWS)
    subject = Subject.objects.get(pk=events[0].subject_id)
    key = crypto.unwrap_key(subject.wrapped_key, subject.id)
    for event in events:
        stored = LedgerEvent.objects.get(pk=event.pk)
        assert (
            crypto.decrypt_details(
                key, bytes(stored.details_ciphertext), event_id=event.id, subject_id=event.subject_id
            )
            == evidence
        )
        assert stored.actor_type == "staff" and stored.actor_id == str(staff.pk)
        token = receipt_for_event(event)
        assert receipt_verify(token)["kantara"]["consentReceiptID"] == str(event.id)
    head = services.tree_head_sign()
    for event in events:
        bundle = event_proof(event=LedgerEvent.objects.get(pk=event.pk), tree_head=head)
        assert merkle.verify_inclusion(
            event.leaf_hash,
            event.seq,
            head.tree_size,
            [bytes.fromhex(h) for h in bundle["inclusion_path"]],
            bytes(head.root_hash),
        )
    assert ledger_verify().ok


def _fail_in_new_event(monkeypatch: pytest.MonkeyPatch) -> None:
    build, calls = services._new_event, itertools.count(1)

    def second_fails(**kwargs: Any) -> Any:
        if next(calls) == 2:
            raise ConsentError("simulated failure")
        return build(**kwargs)

    monkeypatch.setattr(services, "_new_event", second_fails)


def _counter_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE consent_ledgersequence SET next_seq = 1")


def _leaf_hash_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger.merkle, "leaf_hash", lambda entry: b"\x00" * 32)


FAILURES: dict[str, tuple[list[tuple[str, str]], Any, type[Exception], str]] = {
    "unknown purpose in the middle": (
        [(DECLARED, "given"), ("no-such-purpose", "given"), (NEWS, "given")],
        None,
        UnknownPurpose,
        "unknown purpose",
    ),
    "nothing to renew": ([(DECLARED, "given"), (BROWSING, "renewed")], None, ConsentError, "renew"),
    "a purpose twice": ([(DECLARED, "given"), (DECLARED, "refused")], None, ConsentError, "once"),
    "a bad event type": ([(DECLARED, "given"), (NEWS, "expired")], None, ConsentError, "automatic"),
    "a failure building the second event": (
        [(DECLARED, "given"), (NEWS, "given"), (BROWSING, "given")],
        _fail_in_new_event,
        ConsentError,
        "simulated",
    ),
    "a constraint: the counter names a held position": (
        [(DECLARED, "given"), (NEWS, "given")],
        _counter_behind,
        LedgerTampered,
        "already hold",
    ),
    "a leaf hash that does not check": (
        [(DECLARED, "given"), (NEWS, "given")],
        _leaf_hash_differs,
        RuntimeError,
        "differs",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failure_in_a_batch_writes_nothing_and_leaves_no_gap(
    ledger_ready: Any, make_resident: Any, snapshot: Any, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    decisions, sabotage, error, message = FAILURES[case]
    if sabotage is _leaf_hash_differs and connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL computes the leaf hash that Python checks")
    resident, newcomer = make_resident(), make_resident()
    consent_record(user=resident, purpose_code=NEWS, event_type="refused", collection_method="web_form")
    consent_record(user=resident, purpose_code=NEWS, event_type="given", collection_method="web_form")
    with connection.cursor() as cursor:
        cursor.execute("SELECT next_seq FROM consent_ledgersequence")
        (counter,) = cursor.fetchone()
    before = snapshot()
    with monkeypatch.context() as patched:
        if sabotage is not None:
            sabotage(patched)
        with pytest.raises(error, match=message):
            # A new subject: its row would be written inside the batch too.
            consent_record_many(decisions=decisions, collection_method="web_form", user=newcomer)
    assert snapshot() == before
    assert not consent_is_granted(user=newcomer, purpose_code=DECLARED)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE consent_ledgersequence SET next_seq = %s", [counter])
    # The next append takes the next position: no gap.
    events = consent_record_many(
        decisions=[(DECLARED, "given"), (NEWS, "given")], collection_method="web_form", user=newcomer
    )
    assert [event.seq for event in events] == [2, 3]
    assert list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True)) == [0, 1, 2, 3]
    assert ledger_verify().ok


@pytest.mark.django_db
def test_an_empty_batch_writes_nothing(ledger_ready: Any, make_resident: Any, snapshot: Any) -> None:
    resident = make_resident()
    before = snapshot()
    assert consent_record_many(decisions=[], collection_method="web_form", user=resident) == []
    assert snapshot() == before


@pytest.mark.django_db
def test_a_batch_without_a_counter_row_starts_after_the_stored_events(
    ledger_ready: Any, make_resident: Any
) -> None:
    resident = make_resident()
    consent_record(user=resident, purpose_code=NEWS, event_type="given", collection_method="web_form")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM consent_ledgersequence")
    events = consent_record_many(
        decisions=[(DECLARED, "given"), (BROWSING, "given")], collection_method="web_form", user=resident
    )
    assert [event.seq for event in events] == [1, 2]
    assert ledger_verify().ok


@pytest.mark.django_db
def test_append_many_refuses_a_state_written_twice(ledger_ready: Any, make_resident: Any) -> None:
    resident = make_resident()
    event = consent_record(user=resident, purpose_code=NEWS, event_type="given", collection_method="web_form")
    twin = LedgerEvent(**{**event_row_fields(event), "id": uuid.uuid4()})
    with pytest.raises(ValueError, match="one event per subject and purpose"), transaction.atomic():
        ledger.append_many(ledger.writer_head(), [event, twin], with_state=True)


def event_row_fields(event: LedgerEvent) -> dict[str, Any]:
    return {column: getattr(event, column) for column, _kind in ledger.APPEND_COLUMNS}


@pytest.mark.django_db
def test_the_lapsed_consent_job_writes_its_batch_as_single_appends(
    ledger_ready: Any, make_resident: Any
) -> None:
    residents = [make_resident() for _ in range(3)]
    for resident in residents:
        for code in (DECLARED, NEWS):
            consent_record(user=resident, purpose_code=code, event_type="given", collection_method="web_form")
    later = timezone.now() + timedelta(days=400)
    assert services.consent_expire_lapsed(now=later) == 6
    expired = list(LedgerEvent.objects.filter(event_type="expired").order_by("seq"))
    assert [event.seq for event in expired] == list(range(6, 12))
    for event in expired:
        state = ConsentState.objects.get(subject_id=event.subject_id, purpose_id=event.purpose_id)
        assert (state.status, state.event_id, state.valid_until) == ("expired", event.id, None)
    assert services.consent_expire_lapsed(now=later) == 0
    assert ledger_verify().ok


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (concurrent writers)")
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_keep_one_gapless_verifiable_log(make_resident: Any) -> None:
    ensure_catalogue()
    signing_keys_ensure()
    workers, rounds = 4, 20
    residents = [make_resident() for _ in range(workers * 2)]
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "consent" / "ledger_worker.py"),
                ",".join(str(r.pk) for r in residents[i * 2 : i * 2 + 2]),
                str(rounds),
                "batch",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", (line, process.stderr.read() if process.stderr else "")
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    total = 0
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err[-3000:]
        total += int(out.split("appended ")[1])
    assert total == workers * rounds * 3
    seqs = list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(total))
    # Each batch is a run of consecutive positions of one subject.
    subjects = list(LedgerEvent.objects.order_by("seq").values_list("subject_id", flat=True))
    for start in range(0, total, 3):
        assert len(set(subjects[start : start + 3])) == 1
    result = ledger_verify()
    assert result.ok, result.problems
    head = services.tree_head_sign()
    assert head.tree_size == total
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_post_init_receiver_still_sees_the_instances_of_an_append(
    ledger_ready: Any, make_resident: Any
) -> None:
    """The append builds its instances without Model.__init__ (`services._instance`) only while
    no pre_init/post_init receiver listens: one that does is called as before."""
    seen: list[str] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(type(instance).__name__)

    resident = make_resident()
    consent_record(user=resident, purpose_code=NEWS, event_type="given", collection_method="web_form")
    signals.post_init.connect(receiver, sender=LedgerEvent)
    signals.post_init.connect(receiver, sender=ConsentState)
    try:
        events = consent_record_many(
            decisions=[(NEWS, "withdrawn"), (DECLARED, "given")], collection_method="web_form", user=resident
        )
    finally:
        signals.post_init.disconnect(receiver, sender=LedgerEvent)
        signals.post_init.disconnect(receiver, sender=ConsentState)
    assert seen.count("LedgerEvent") >= 2 and "ConsentState" in seen
    assert [event.event_type for event in events] == ["withdrawn", "given"]
    assert ledger_verify().ok
