"""Every query of the hot and per-resident paths uses an index (issue 14, "At scale").

PostgreSQL only. Each test fills the test database with bench/generate.py's `generate()`
(residents with sessions, tokens and consent subjects, a ledger of events, their Merkle nodes
and current states, then ANALYZE), drives the real view or service once with
CaptureQueriesContext, and asks PostgreSQL for the plan of every SELECT, UPDATE and DELETE
captured (`EXPLAIN (FORMAT JSON)`, planner settings untouched: no `enable_seqscan = off`).
A sequential scan of a table that grows with residents or events fails the test, naming the
statement.

The planner chooses honestly only where a table has rows: the generated tables hold
thousands. Tables the generator does not fill (audit events, profiles, connectors' links…)
are nearly empty here, where a sequential scan is the planner's right choice; for those the
test checks instead that the statement's table has an index whose leading column is compared
with `=` in the WHERE clause (`_covered`).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.generate import generate, target_problem
from consent.export_archive import archive_build
from consent.gate import consent_is_granted
from consent.ledger import daily_counts_differences
from consent.models import LedgerEvent
from consent.rights import rights_export
from consent.selectors import event_proof, events_search, inclusion_proof, ledger_verify
from identity.models import User
from identity.oidc import access_tokens
from tests.conftest import OIDCFlow, staff_mfa_login

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="EXPLAIN plans of PostgreSQL"),
]

RESIDENTS, EVENTS = 1_000, 8_000
# Tables that the generator fills: the planner sees thousands of rows and must pick an index.
GENERATED = {
    "identity_user",
    "identity_browsersession",
    "identity_accesstoken",
    "identity_refreshtoken",
    "consent_subject",
    "consent_ledgerevent",
    "consent_merklenode",
    "consent_consentstate",
}
# Tables whose size does not grow with residents or events: a sequential scan is right.
BOUNDED = {
    "consent_purpose",
    "consent_privacynotice",
    "consent_ledgerhead",
    "identity_client",
    "identity_signingkey",
    "auth_group",
    "auth_permission",
    "django_content_type",
    "profiles_inferencesettings",
    "connectors_partnerconnector",
    # The DPO statistics' daily counts grow with days × purposes × event types (a few thousand
    # rows a year), not with residents or events: a year's statistics read a year of them.
    "consent_dailycount",
}
# Tables read whole on a hot path, knowingly: none (proofs and pages read the latest signed
# tree heads by the tree_size index: consent.selectors.LATEST_HEADS).
KNOWN_FULL_READS: set[str] = set()


@pytest.fixture
def populated(db: Any, signing_keys: Any) -> dict[str, Any]:
    return generate(residents=RESIDENTS, events=EVENTS, seed="query-plans")


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def _index_keys(table: str) -> list[str]:
    """The first key of each index of `table`: a column name or an expression."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid, 1, true) FROM pg_index WHERE indrelid = %s::regclass", [table]
        )
        return [row[0] for row in cursor.fetchall()]


def _covered(table: str, node: dict[str, Any]) -> bool:
    """A filter comparing the first key of an index of `table` (`=`, `= ANY`, `<`, `>`…)."""
    condition = node.get("Filter", "")
    for key in _index_keys(table):
        pattern = (
            rf"\b{re.escape(key)}\)? (=|<|>|<=|>=) "
            if key.isidentifier()
            else rf"{re.escape(key)}\)? (=|<|>|<=|>=) "
        )
        if re.search(pattern, condition):
            return True
    return False


def _seq_scans(statements: list[str], *, known: frozenset[str] = frozenset(KNOWN_FULL_READS)) -> list[str]:
    """Statements whose plan scans a growing table sequentially, with the table named."""
    problems = []
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
            raw = cursor.fetchone()[0]
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            for node in _plan_nodes(plan):
                if node["Node Type"] != "Seq Scan":
                    continue
                table = node["Relation Name"]
                if table in BOUNDED or table in known:
                    continue
                if table not in GENERATED and _covered(table, node):
                    continue
                problems.append(f"{table}: {' '.join(sql.split())[:300]}")
    return problems


def _captured(action: Callable[[], Any]) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        action()
    statements = [query["sql"] for query in queries.captured_queries]
    # INSERTs read no table; SAVEPOINTs and SETs have no plan.
    planned = [sql for sql in statements if re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)\b", sql, re.IGNORECASE)]
    assert planned, statements
    return planned


def _check(action: Callable[[], Any]) -> list[str]:
    statements = _captured(action)
    problems = _seq_scans(statements)
    assert not problems, "sequential scans:\n" + "\n".join(problems)
    return statements


def _tokens(flow: OIDCFlow) -> dict[str, Any]:
    response = flow.token(flow.get_code())
    assert response.status_code == 200, response.content
    return response.json()


def test_the_generator_refuses_a_database_not_named_for_benchmarks(populated: dict[str, Any]) -> None:
    # The test database is named after the project's, without "bench".
    assert "bench" not in connection.settings_dict["NAME"]
    assert "must contain 'bench'" in target_problem(connection)


def test_the_generator_refuses_production_settings(monkeypatch: Any) -> None:
    monkeypatch.setitem(connection.settings_dict, "NAME", "cum_bench_scale")
    assert target_problem(connection) == ""
    with override_settings(PRODUCTION=True):
        assert "production" in target_problem(connection)


def test_userinfo_reads_by_index(populated: dict[str, Any], flow: OIDCFlow, client: Any) -> None:
    access = _tokens(flow)["access_token"]

    def userinfo() -> None:
        response = client.get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {access}")
        assert response.status_code == 200

    statements = _check(userinfo)
    # The read calls oidc_token_resident (migration identity 0011), whose inner plan EXPLAIN
    # of the call does not show: the function's own statement is planned here, with this
    # token's values in place of its parameters.
    assert any("oidc_token_resident(" in sql for sql in statements), statements
    function = importlib.import_module("identity.migrations.0011_token_resident_function").TOKEN_RESIDENT
    body = function.split("RETURN QUERY", 1)[1].split(";", 1)[0]
    with connection.cursor() as cursor:
        values = {
            "wanted_checksum": cursor.mogrify("%s", [access_tokens.checksum(access)]),
            "at_instant": cursor.mogrify("%s::timestamptz", [timezone.now()]),
        }
    for name, literal in values.items():
        body = re.sub(rf"\b{name}\b", literal, body)
    assert not _seq_scans([body]), body


def test_refresh_rotation_reads_and_writes_by_index(
    populated: dict[str, Any], flow: OIDCFlow, client: Any
) -> None:
    refresh = _tokens(flow)["refresh_token"]

    def rotate() -> None:
        response = client.post(
            "/token",
            {"grant_type": "refresh_token", "refresh_token": refresh},
            HTTP_AUTHORIZATION=flow.rp.basic_auth(),
        )
        assert response.status_code == 200, response.content

    statements = _check(rotate)
    # The claim of the refresh token was planned too: a plain UPDATE, or on PostgreSQL the
    # first step of the one statement that also writes the new tokens (identity/oidc/token_writes.py).
    claim = re.compile(r'\bUPDATE\s+"?identity_refreshtoken"?\s+SET\b', re.IGNORECASE)
    assert any(claim.search(sql) for sql in statements), statements


def test_authorization_code_exchange_reads_by_index(populated: dict[str, Any], flow: OIDCFlow) -> None:
    code = flow.get_code()
    statements = _check(lambda: flow.token(code))
    # The code's claim was planned too: on PostgreSQL the UPDATE that also reads the code
    # (identity/oidc/token_rows.py claimed_code_row), by the code's unique index.
    claim = re.compile(r'\bUPDATE\s+"?identity_authorizationcode"?\s+SET\b', re.IGNORECASE)
    assert any(claim.search(sql) for sql in statements), statements


def test_session_lookup_and_account_pages_read_by_index(populated: dict[str, Any], signed_in: Any) -> None:
    def page() -> None:
        response = signed_in.get("/compte/consentements/")
        assert response.status_code == 200

    statements = _check(page)
    assert any("identity_browsersession" in sql for sql in statements), statements


def test_consent_gate_reads_by_index(populated: dict[str, Any]) -> None:
    resident = User.objects.get(email=f"bench-{populated['run']}-7@bench.example")
    _check(lambda: consent_is_granted(user=resident, purpose_code="personalisation-declared"))


def test_a_residents_export_reads_by_index(populated: dict[str, Any]) -> None:
    resident = User.objects.get(email=f"bench-{populated['run']}-11@bench.example")
    _check(lambda: archive_build(rights_export(resident), language="fr"))


def test_ledger_proofs_read_by_index(populated: dict[str, Any]) -> None:
    size = populated["events"]
    _check(lambda: inclusion_proof(leaf_index=size // 3, tree_size=size))
    event = LedgerEvent.objects.get(seq=size // 2)
    _check(lambda: event_proof(event=event))


def test_dpo_partner_filter_reads_by_the_plain_index(populated: dict[str, Any]) -> None:
    # The DPO's partner filter compares with `=` (no LIKE): the plain btree serves it since the
    # "_like" twin went (migration consent 0014), for a partner seen in the ledger or not.
    for partner in ("partner-not-in-ledger", "bench-partner"):
        statements = _check(lambda partner=partner: list(events_search(partner_client_id=partner)[:50]))
        assert any("partner_client_id" in sql for sql in statements), statements
    _check(lambda: LedgerEvent.objects.filter(partner_client_id="bench-partner").exists())


@pytest.mark.parametrize(
    "query",
    [
        "?bucket=day",
        "?bucket=week",
        "?purpose=personalisation-declared&bucket=day",
        # A year by month: the pre-aggregated daily counts (consent_dailycount) and the pending
        # events only, where counting every event of the year was a sequential scan.
        "?bucket=month",
        "?purpose=personalisation-declared&bucket=month",
    ],
)
def test_dpo_statistics_read_by_index(populated: dict[str, Any], make_resident: Any, query: str) -> None:
    dpo = make_resident("dpo@nantesmetropole.fr")
    dpo.is_staff = True
    dpo.save(update_fields=["is_staff"])
    dpo.groups.add(Group.objects.get_or_create(name="dpo")[0])
    console = staff_mfa_login(Client(), dpo)

    def stats() -> None:
        response = console.get("/dpo/statistiques/" + query)
        assert response.status_code == 200

    _check(stats)


def test_the_generated_ledger_verifies(populated: dict[str, Any]) -> None:
    result = ledger_verify()
    assert result.ok, result.first_problem
    assert result.size == EVENTS
    assert daily_counts_differences() == []  # the generator counted them as the sequencer does
    # Resident 0's events are 0, R, 2R, …: eight of them, slots 0-3 given, then 4-7 withdrawn;
    # its current state per purpose is its last event there.
    resident = User.objects.get(email=f"bench-{populated['run']}-0@bench.example")
    assert not consent_is_granted(user=resident, purpose_code="personalisation-declared")  # j=4: withdrawn
    other = User.objects.get(email=f"bench-{populated['run']}-{RESIDENTS - 1}@bench.example")
    assert other.pk != resident.pk
    # With 1,000 residents and 8,000 events every resident has 8 events: the same story.
    assert not consent_is_granted(user=other, purpose_code="service-news-email")  # j=7: withdrawn


def test_a_proof_reads_only_the_tree_heads_it_needs(populated: dict[str, Any]) -> None:
    event = LedgerEvent.objects.get(seq=populated["events"] // 2)
    statements = _captured(lambda: event_proof(event=event))
    assert not _seq_scans(statements, known=frozenset())
