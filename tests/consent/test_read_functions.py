"""The gate and the proof read as PL/pgSQL functions (issue 14, migration consent 0013).

On PostgreSQL `consent_is_granted` and its batched and browser forms call `consent_gate` /
`consent_gate_many`, and the proofs call `consent_proof_hashes`: the plain statements they
replaced (still run on SQLite) are the reference. Every test here compares the two, or checks a
failure path of the function form. Correctness only: speed is measured by bench/ledger.py."""

from __future__ import annotations

import importlib
import itertools
import random
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from consent import gate, ledger, merkle
from consent.gate import consent_is_granted_for_subject
from consent.models import GRANTING_EVENTS, OBJECTING_EVENTS, ConsentState, EventType, LedgerEvent, Purpose
from consent.prepared import prepared_fetch
from consent.purpose_data import DataSubject
from consent.selectors import (
    consent_is_granted,
    consent_is_granted_for_browser,
    purpose_by_code,
)
from consent.services import UnknownPurpose, browser_id_hash, consent_record, notice_publish
from tests.security.test_ledger_tampering import execute, unlock

POSTGRESQL = connection.vendor == "postgresql"
functions_only = pytest.mark.skipif(not POSTGRESQL, reason="the PL/pgSQL functions of migration consent 0013")

DECLARED = "personalisation-declared"
BROWSING = "personalisation-browsing"
NEWS = "service-news-email"
AUDIENCE = "audience-measurement"
PURPOSES = (DECLARED, BROWSING, NEWS, AUDIENCE)
BROWSER = "cmVhZHMtZnVuY3Rpb25zLWJyb3dzZXItaWQtMDAwMDAwMA"

migration = importlib.import_module("consent.migrations.0013_read_functions")


def function_answer(kind: str, key: Any, code: str, at: Any) -> bool | None:
    user_key, browser_hash = (key, None) if kind == "user" else (None, key)
    return prepared_fetch(gate._GATE_CALL, [user_key, browser_hash, code, at])[0]


def plain_answer(kind: str, key: Any, code: str, at: Any) -> bool | None:
    row = prepared_fetch(gate._PLAIN_BY[kind], [at, key, code])
    return None if row is None else gate._gate_decision(row)


def test_the_migration_spells_the_models_statuses() -> None:
    """The decision in SQL names the granting and objecting statuses: they are the models'."""
    granting = "('" + "', '".join(str(e) for e in GRANTING_EVENTS) + "')"
    objecting = "('" + "', '".join(str(e) for e in OBJECTING_EVENTS) + "')"
    assert f"s.status IN {granting}" in migration.GATE
    assert f"s.status IN {objecting}" in migration.GATE
    assert migration.GATE_MANY.count(granting) == 2 and migration.GATE_MANY.count(objecting) == 2


@functions_only
@pytest.mark.postgres
def test_the_gate_function_decides_as_the_plain_statement_for_every_state(make_resident: Any) -> None:
    """Every status of a state × renewal flag × end of validity (none, past, future) × a purpose
    that needs consent or not × active or retired, for an account and a browser, at the instant
    the gate is asked: the function's answer is the plain statement's through `_gate_decision`."""
    resident = make_resident()
    consent_record(user=resident, purpose_code=DECLARED, event_type="given", collection_method="web_form")
    consent_record(user=resident, purpose_code=AUDIENCE, event_type="given", collection_method="web_form")
    consent_record(
        browser_id=BROWSER, purpose_code=DECLARED, event_type="given", collection_method="cookie_widget"
    )
    consent_record(
        browser_id=BROWSER, purpose_code=AUDIENCE, event_type="given", collection_method="cookie_widget"
    )
    now = timezone.now()
    keys = {"user": resident.pk, "browser": browser_id_hash(BROWSER)}
    compared, granted = 0, 0
    for code, active in itertools.product((DECLARED, AUDIENCE), (True, False)):
        Purpose.objects.filter(code=code).update(is_active=active)
        states = ConsentState.objects.filter(purpose__code=code)
        assert states.count() == 2
        for status, renewal, until in itertools.product(
            EventType.values, (False, True), (None, now - timedelta(seconds=1), now, now + timedelta(days=1))
        ):
            states.update(status=status, renewal_required=renewal, valid_until=until)
            for kind, key in keys.items():
                expected = plain_answer(kind, key, code, now)
                assert function_answer(kind, key, code, now) is expected, (
                    code,
                    active,
                    status,
                    renewal,
                    until,
                )
                compared += 1
                granted += bool(expected)
    assert compared == 2 * 2 * len(EventType.values) * 2 * 4 * 2
    assert 0 < granted < compared  # both answers occur


@functions_only
@pytest.mark.postgres
def test_the_gate_functions_answer_as_the_plain_statements_through_the_public_api(
    make_resident: Any, monkeypatch: Any
) -> None:
    """The cases of tests/consent/test_gate.py through the public functions (which call the
    PL/pgSQL functions on PostgreSQL), against the plain statements: given, refused,
    withdrawn, expired at that instant, renewal required, exempt purpose, no subject at all,
    browser subjects, unknown purpose; and the batched forms."""
    resident, other, nobody = make_resident(), make_resident(), make_resident()
    start = timezone.now() - timedelta(days=200)
    monkeypatch.setattr(timezone, "now", lambda: start)
    consent_record(user=resident, purpose_code=BROWSING, event_type="given", collection_method="web_form")
    monkeypatch.undo()
    for user, code, decision in (
        (resident, DECLARED, "given"),
        (resident, AUDIENCE, "refused"),
        (other, NEWS, "given"),
        (other, DECLARED, "refused"),
        (other, AUDIENCE, "withdrawn"),
        (other, AUDIENCE, "given"),
    ):
        consent_record(user=user, purpose_code=code, event_type=decision, collection_method="web_form")
    consent_record(
        browser_id=BROWSER, purpose_code=BROWSING, event_type="given", collection_method="cookie_widget"
    )
    consent_record(
        browser_id=BROWSER, purpose_code=AUDIENCE, event_type="refused", collection_method="cookie_widget"
    )

    def agree() -> dict[tuple[str, str], bool]:
        answers = {}
        now = timezone.now()
        for user in (resident, other, nobody):
            single = {}
            for code in PURPOSES:
                expected = plain_answer("user", user.pk, code, now)
                assert consent_is_granted(user=user, purpose_code=code) is expected
                assert (
                    consent_is_granted_for_subject(subject=DataSubject(user_id=user.pk), purpose_code=code)
                    is expected
                )
                single[code] = expected
                answers[(user.email, code)] = expected
            assert gate.consent_granted_many(user=user, purpose_codes=PURPOSES) == single
            assert gate._granted_many_plain("user", user.pk, list(PURPOSES)) == single
        hashed = browser_id_hash(BROWSER)
        for browser, key in ((BROWSER, hashed), ("c" * 32, browser_id_hash("c" * 32))):
            single = {code: plain_answer("browser", key, code, now) for code in PURPOSES}
            for code in PURPOSES:
                assert consent_is_granted_for_browser(browser_id=browser, purpose_code=code) is single[code]
            subject = DataSubject(browser_hash=key)
            assert gate.consent_granted_many_for_subject(subject=subject, purpose_codes=PURPOSES) == single
        return answers

    answers = agree()
    assert answers[(resident.email, DECLARED)] is True
    assert answers[(resident.email, BROWSING)] is False  # lapsed at this instant
    assert answers[(resident.email, AUDIENCE)] is False  # exempt, objected
    assert answers[(nobody.email, AUDIENCE)] is True  # exempt, no subject at all
    assert answers[(other.email, AUDIENCE)] is True
    notice_publish(
        purpose=purpose_by_code(NEWS), text_fr="Nouveaux usages", text_en="New uses", material=True
    )
    answers = agree()
    assert answers[(other.email, NEWS)] is False  # renewal required
    consent_record(user=other, purpose_code=NEWS, event_type="renewed", collection_method="web_form")
    assert agree()[(other.email, NEWS)] is True
    # The instant a decision commits, the gate answers it (no cache to go stale).
    consent_record(user=resident, purpose_code=DECLARED, event_type="withdrawn", collection_method="web_form")
    assert consent_is_granted(user=resident, purpose_code=DECLARED) is False
    Purpose.objects.filter(code=NEWS).update(is_active=False)
    assert agree()[(other.email, NEWS)] is False  # retired


@functions_only
@pytest.mark.postgres
def test_unknown_purposes_raise_through_the_functions(make_resident: Any) -> None:
    resident = make_resident()
    assert function_answer("user", resident.pk, "no-such-purpose", timezone.now()) is None
    assert function_answer("browser", "x" * 43, "no-such-purpose", timezone.now()) is None
    with pytest.raises(UnknownPurpose):
        consent_is_granted(user=resident, purpose_code="no-such-purpose")
    with pytest.raises(UnknownPurpose):
        consent_is_granted_for_browser(browser_id=BROWSER, purpose_code="no-such-purpose")
    with pytest.raises(UnknownPurpose):
        gate.consent_granted_many(user=resident, purpose_codes=[DECLARED, "no-such-purpose"])
    with pytest.raises(UnknownPurpose):
        gate.consent_granted_many_for_subject(
            subject=DataSubject(browser_hash="x" * 43), purpose_codes=["no-such-purpose"]
        )


@functions_only
@pytest.mark.postgres
@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "unprepared"])
def test_the_gate_and_proofs_call_the_functions(
    ledger_ready: Any, make_resident: Any, settings: Any, prepared: bool
) -> None:
    """On PostgreSQL the public functions run one statement each, a call of the function,
    prepared or not as the deployment says."""
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    resident = make_resident()
    for _ in range(3):
        consent_record(user=resident, purpose_code=DECLARED, event_type="given", collection_method="web_form")
    ledger.integrate()
    seen: list[str] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        assert consent_is_granted(user=resident, purpose_code=DECLARED) is True
        assert gate.consent_granted_many(user=resident, purpose_codes=[DECLARED, NEWS]) == {
            DECLARED: True,
            NEWS: False,
        }
        assert len(ledger.inclusion_proof(1, 3)) == 2
    assert seen == [gate._GATE_CALL, gate._GATE_MANY_CALL, ledger._PROOF_PG_CALL]
    if prepared:
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            statements = " ".join(row[0] for row in cursor.fetchall())
        for name in ("consent_gate(", "consent_gate_many(", "consent_proof_hashes("):
            assert name in statements


def _rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return sorted(
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cursor.fetchall()
        )


@functions_only
@pytest.mark.postgres
def test_the_proof_function_returns_the_plain_statements_rows(ledger_ready: Any, make_resident: Any) -> None:
    """consent_proof_hashes against the UNION it holds: the keys of every inclusion and
    consistency proof of a 45-event tree, keys that are not stored, no keys at all."""
    resident = make_resident()
    for i in range(45):
        consent_record(
            user=resident,
            purpose_code=DECLARED,
            event_type=("given", "withdrawn")[i % 2],
            collection_method="web_form",
        )
    ledger.integrate()
    key_sets = [
        {
            key
            for lo, hi in merkle.inclusion_proof_ranges(index, size)
            for key in merkle.perfect_subtrees(lo, hi)
        }
        for size in (1, 2, 7, 32, 33, 45)
        for index in range(0, size, 3)
    ]
    key_sets += [
        {
            key
            for lo, hi in merkle.consistency_proof_ranges(first, 45)
            for key in merkle.perfect_subtrees(lo, hi)
        }
        for first in range(46)
    ]
    key_sets += [set(), {(0, 44), (0, 45), (0, 10_000)}, {(5, 1), (5, 2), (9, 0)}, {(0, 3), (1, 3), (2, 3)}]
    for keys in key_sets:
        call, params = ledger._proof_statement(keys)
        assert call == ledger._PROOF_PG_CALL
        function = _rows(call, params)
        assert function == _rows(ledger._PROOF_PG_SQL, params), sorted(keys)
        assert function[0] == (-1, 45, None)
        assert len(function) == 1 + len(
            [k for k in keys if (k[0] == 0 and k[1] < 45) or (k[0] and (k[1] + 1) << k[0] <= 45)]
        )


@pytest.mark.django_db
def test_proofs_verify_against_the_roots_of_many_sizes(ledger_ready: Any, make_resident: Any) -> None:
    """Inclusion and consistency proofs of a 150-event ledger (every size, random leaves and
    pairs) verify against the roots computed from the leaves; both databases."""
    resident = make_resident()
    for i in range(150):
        consent_record(
            user=resident,
            purpose_code=(DECLARED, NEWS)[i % 2],
            event_type="given",
            collection_method="web_form",
        )
    leaves = [bytes(h) for h in LedgerEvent.objects.order_by("seq").values_list("leaf_hash", flat=True)]
    roots = [merkle.root_from_leaves(leaves[:size]) for size in range(151)]
    rng = random.Random(1413)
    for size in range(1, 151):
        assert ledger.root_at(size) == roots[size]
        for index in {0, size - 1, rng.randrange(size)}:
            path = ledger.inclusion_proof(index, size)
            assert merkle.verify_inclusion(leaves[index], index, size, path, roots[size])
        first = rng.randrange(size + 1)
        proof = ledger.consistency_proof(first, size)
        assert merkle.verify_consistency(first, size, roots[first], roots[size], proof)


@pytest.mark.django_db
def test_proof_failure_paths(ledger_ready: Any, make_resident: Any) -> None:
    """A size beyond the head, a leaf outside the tree, a stored node missing: ProofError,
    whichever database (on PostgreSQL through the function)."""
    resident = make_resident()
    for _ in range(9):
        consent_record(user=resident, purpose_code=DECLARED, event_type="given", collection_method="web_form")
    ledger.integrate()
    with pytest.raises(ledger.ProofError, match="outside the ledger"):
        ledger.inclusion_proof(3, 10)
    with pytest.raises(ledger.ProofError, match="outside the ledger"):
        ledger.inclusion_proof(12, 10)  # both wrong: the size is reported first
    with pytest.raises(ledger.ProofError, match="not in a tree of size 9"):
        ledger.inclusion_proof(9, 9)
    with pytest.raises(ledger.ProofError, match="not in a tree"):
        ledger.inclusion_proof(-1, 9)
    with pytest.raises(ledger.ProofError, match="outside the ledger"):
        ledger.consistency_proof(2, 10)
    with pytest.raises(ledger.ProofError, match="outside the ledger"):
        ledger.root_at(10)
    unlock()
    execute('DELETE FROM consent_merklenode WHERE level = 2 AND "index" = 0')
    with pytest.raises(ledger.ProofError, match=r"lacks subtree hashes \[\(2, 0\)\]"):
        ledger.inclusion_proof(5, 9)
    with pytest.raises(ledger.ProofError, match="lacks subtree hashes"):
        ledger.root_at(4)
    assert len(ledger.inclusion_proof(8, 9)) == 1  # a proof that needs no missing node: (3, 0)


@functions_only
@pytest.mark.postgres
@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
def test_the_statements_inside_the_functions_are_index_lookups(
    ledger_ready: Any, make_resident: Any, plan_mode: str
) -> None:
    """The plans PostgreSQL keeps for the statements inside the functions (custom, and the
    generic plan a function's statement switches to after a few calls), shown by auto_explain
    for nested statements: every table read through an index (sequential scans forbidden, the
    test tables being tiny, so that the plan shows whether an index *can* answer)."""
    resident = make_resident()
    for i in range(9):
        consent_record(
            user=resident,
            purpose_code=DECLARED,
            event_type=("given", "refused")[i % 2],
            collection_method="web_form",
        )
    consent_record(
        browser_id=BROWSER, purpose_code=BROWSING, event_type="given", collection_method="cookie_widget"
    )
    ledger.integrate()
    keys = {key for lo, hi in merkle.inclusion_proof_ranges(4, 9) for key in merkle.perfect_subtrees(lo, hi)}
    proof_sql, proof_params = ledger._proof_statement(keys)
    now = timezone.now()
    calls = [
        (
            gate._GATE_CALL,
            [resident.pk, None, DECLARED, now],
            ("consent_purpose", "consent_subject", "consent_consentstate"),
        ),
        (
            gate._GATE_CALL,
            [None, browser_id_hash(BROWSER), BROWSING, now],
            ("consent_subject", "consent_consentstate"),
        ),
        (
            gate._GATE_MANY_CALL,
            [resident.pk, None, [DECLARED, NEWS], now],
            ("consent_purpose", "consent_consentstate"),
        ),
        (proof_sql, proof_params, ("consent_ledgerhead", "consent_ledgerevent", "consent_merklenode")),
    ]
    plans: list[str] = []
    raw = None
    with connection.cursor() as cursor:
        try:
            cursor.execute("LOAD 'auto_explain'")
        except Exception:  # a server without the module, or a user not allowed to load it
            pytest.skip("auto_explain cannot be loaded on this server")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
            "client_min_messages = log",
            "enable_seqscan = off",
            f"plan_cache_mode = {plan_mode}",
        ):
            cursor.execute(f"SET LOCAL {setting}")
        cursor.execute("DISCARD PLANS")  # plans this connection kept are made again, with these settings
        raw = connection.connection

        def collect(diagnostic: Any) -> None:
            plans.append(diagnostic.message_primary or "")

        raw.add_notice_handler(collect)
        try:
            for sql, params, tables in calls:
                for _ in range(7):  # past the calls after which PL/pgSQL may keep a generic plan
                    plans.clear()
                    cursor.execute(sql, params)
                    cursor.fetchall()
                # The caller's statement (a call) aside: the plans of the statements inside.
                outer = ("consent_gate(", "consent_gate_many(", "consent_proof_hashes(")
                inner = "\n".join(plan for plan in plans if not any(name in plan for name in outer))
                for table in tables:
                    assert f" on {table}" in inner and f"Seq Scan on {table}" not in inner, (sql, inner)
        finally:
            raw.remove_notice_handler(collect)
