# ruff: noqa: F811  (fixtures imported from tests/consent_api are parameters here)
"""Issue 9, finding 10: `verify_ledger` must report any altered or malformed row, never crash.

Rows are altered the way an attacker with database access would: raw SQL, with the
append-only triggers disabled (PostgreSQL) or dropped (SQLite) as in
tests/consent/test_ledger_integrity.py. Every alteration must be reported as tampering naming
the event's position, with a non-zero exit status and no traceback: through `call_command`,
a real `manage.py verify_ledger` process, the DPO console's verification page and its API.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consent.models import LedgerEvent, Purpose
from consent.selectors import LedgerVerification, ledger_verify
from consent.services import tree_head_sign
from tests.consent.test_ledger_integrity import fill
from tests.consent_api.conftest import dpo, dpo_http, make_dpo  # noqa: F401

pytestmark = pytest.mark.django_db

EVENTS = 8
TARGET = 5
TABLES = ("consent_ledgerevent", "consent_merklenode", "consent_treehead")


def unlock() -> None:
    """Disable the append-only triggers (only a table owner can: the test database user is one)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table in TABLES:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
            # Foreign keys stay deferred, as Django creates them: checked at a commit that,
            # in a test transaction, never comes.
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            for table in TABLES:
                for operation in ("update", "delete"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")


def execute(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def stored_uuid(value: uuid.UUID) -> Any:
    return value.hex if connection.vendor == "sqlite" else value


def verify_by_command(*args: str) -> tuple[str, str, str]:
    """(stdout, stderr, error message); fails the test on anything but a CommandError."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("verify_ledger", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), str(failure.value)


def names_position(result: LedgerVerification, position: int) -> bool:
    return any(problem.seq == position for problem in result.problems)


@pytest.fixture
def ledger(make_resident: Any, signing_keys: Any) -> Any:
    events = fill(make_resident, EVENTS)
    tree_head_sign()
    # Undone after the test: Django checks the foreign keys of a test transaction at its end,
    # and an altered event id or subject would fail that check.
    savepoint = transaction.savepoint()
    unlock()
    yield events
    transaction.savepoint_rollback(savepoint)


# --- every column of an event ---------------------------------------------------------------


def _other_purpose_id(event: LedgerEvent) -> int:
    return Purpose.objects.exclude(code=event.purpose_code).values_list("pk", flat=True).first()


EVENT_CASES: list[tuple[str, str, str, Any]] = [
    # (name, vendors, SET clause, parameter: a value, or a function of the target event)
    ("seq-gap", "both", "seq = %s", 1000),
    ("seq-negative", "both", "seq = %s", -7),
    ("id-another-uuid", "both", "id = %s", lambda e: stored_uuid(uuid.uuid4())),
    ("event-type-unknown", "both", "event_type = %s", "hacked"),
    ("collection-method-unknown", "both", "collection_method = %s", "telepathy"),
    ("actor-type-unknown", "both", "actor_type = %s", "robot"),
    ("actor-id-changed", "both", "actor_id = %s", "quelqu-un"),
    ("subject-dangling", "both", "subject_id = %s", lambda e: stored_uuid(uuid.uuid4())),
    ("purpose-id-of-another-purpose", "both", "purpose_id = %s", _other_purpose_id),
    ("purpose-id-dangling", "both", "purpose_id = %s", 987654),
    ("notice-id-dangling", "both", "notice_id = %s", 987654),
    ("notice-version-changed", "both", "notice_version = %s", 999),
    ("notice-sha256-changed", "both", "notice_sha256 = %s", "0" * 64),
    ("occurred-at-changed", "both", "occurred_at = %s", "2020-01-01 00:00:00"),
    ("leaf-hash-short", "both", "leaf_hash = %s", b"\x00"),
    ("leaf-hash-other", "both", "leaf_hash = %s", bytes(32)),
    ("details-garbage", "both", "details_ciphertext = %s", b"\x01\x02"),
    ("details-empty", "both", "details_ciphertext = %s", b""),
    # SQLite keeps whatever is written: types, formats and encodings the ORM cannot read.
    ("id-not-a-uuid", "sqlite", "id = %s", "not-a-uuid"),  # the review's reproduction
    ("id-uppercase", "sqlite", "id = upper(id)", None),
    ("id-dashed", "sqlite", "id = %s", lambda e: str(e.id)),
    ("id-integer", "sqlite", "id = %s", 12),
    ("seq-text", "sqlite", "seq = %s", "cinq"),
    ("seq-real", "sqlite", "seq = %s", 4.5),
    ("seq-blob", "sqlite", "seq = %s", b"\x05"),
    ("occurred-at-text", "sqlite", "occurred_at = %s", "hier soir"),
    ("occurred-at-impossible", "sqlite", "occurred_at = %s", "2026-13-45 25:61:00"),
    ("occurred-at-other-format", "sqlite", "occurred_at = replace(occurred_at, ' ', 'T')", None),
    ("occurred-at-with-offset", "sqlite", "occurred_at = occurred_at || '+00:00'", None),
    ("occurred-at-integer", "sqlite", "occurred_at = %s", 1700000000),
    ("valid-until-text", "sqlite", "valid_until = %s", "jamais"),
    ("purpose-code-blob", "sqlite", "purpose_code = %s", b"\xff"),
    ("actor-id-not-utf8", "sqlite", "actor_id = CAST(X'FFFE41' AS TEXT)", None),
    ("subject-not-a-uuid", "sqlite", "subject_id = %s", "personne"),
    ("linked-from-not-a-uuid", "sqlite", "linked_from = %s", "rien"),
    ("notice-version-text", "sqlite", "notice_version = %s", "trois"),
    ("leaf-hash-text", "sqlite", "leaf_hash = %s", "deadbeef"),
    ("details-text", "sqlite", "details_ciphertext = %s", "pas chiffré"),
    ("purpose-id-text", "sqlite", "purpose_id = %s", "un"),
    # PostgreSQL types refuse most of the above; what they accept is still reported.
    ("occurred-at-infinity", "postgresql", "occurred_at = 'infinity'", None),
    ("valid-until-far-past", "postgresql", "valid_until = '4000-01-01 BC'", None),
]


def _cases(vendor: str) -> list[Any]:
    return [
        pytest.param(set_clause, value, id=name)
        for name, vendors, set_clause, value in EVENT_CASES
        if vendors in ("both", vendor)
    ]


def _vendor() -> str:
    return connection.vendor  # settings are configured before collection (pytest-django)


@pytest.mark.parametrize(("set_clause", "value"), _cases(_vendor()))
def test_every_altered_or_malformed_column_is_reported_with_the_events_position(
    ledger: list[LedgerEvent], set_clause: str, value: Any
) -> None:
    target = ledger[TARGET]
    params = [] if "%s" not in set_clause else [value(target) if callable(value) else value]
    execute(f"UPDATE consent_ledgerevent SET {set_clause} WHERE seq = %s", [*params, TARGET])

    result = ledger_verify()
    assert not result.ok
    assert names_position(result, TARGET), [p.detail for p in result.problems]
    assert any(f"#{TARGET}" in problem.detail for problem in result.problems)

    out, err, message = verify_by_command()
    assert message.startswith("ledger verification FAILED")
    assert f"#{TARGET}" in message + err
    assert "Traceback" not in out + err + message

    out, err, message = verify_by_command("--json")
    report = json.loads(out)
    assert report["ok"] is False
    assert any(problem["seq"] == TARGET for problem in report["problems"])


@pytest.mark.skipif(_vendor() != "postgresql", reason="PostgreSQL constraints")
def test_postgresql_null_and_duplicate_values_once_constraints_are_dropped(ledger: list[LedgerEvent]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'consent_ledgerevent'::regclass AND contype = 'u'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE consent_ledgerevent DROP CONSTRAINT "{name}"')
        for column in ("leaf_hash", "event_type", "occurred_at", "actor_id"):
            cursor.execute(f"ALTER TABLE consent_ledgerevent ALTER COLUMN {column} DROP NOT NULL")
    for set_clause, seq in (
        ("leaf_hash = NULL", 1),
        ("event_type = NULL", 2),
        ("occurred_at = NULL", 3),
        ("actor_id = NULL", 4),
        ("seq = 5", 6),  # a duplicate: #6 then is missing
    ):
        execute(f"UPDATE consent_ledgerevent SET {set_clause} WHERE seq = %s", [seq])
    result = ledger_verify()
    for position in (1, 2, 3, 4, 6):
        assert names_position(result, position), (position, [p.detail for p in result.problems])
    assert any(p.kind == "unexpected" and p.seq == 5 for p in result.problems)
    verify_by_command()


# --- signed tree heads and the head row -----------------------------------------------------


TREE_HEAD_CASES = [
    ("root-hash-short", "both", "root_hash = %s", b"\x00"),
    ("root-hash-other", "both", "root_hash = %s", bytes(32)),
    ("tree-size-changed", "both", "tree_size = %s", 3),
    ("tree-size-negative", "both", "tree_size = %s", -1),
    ("signature-garbage", "both", "signature = %s", "pas.une.signature"),
    ("signature-empty", "both", "signature = %s", ""),
    ("kid-other", "both", "kid = %s", "autre-cle"),
    ("timestamp-changed", "both", "timestamp = %s", "2020-01-01 00:00:00"),
    ("tree-size-text", "sqlite", "tree_size = %s", "huit"),
    ("timestamp-text", "sqlite", "timestamp = %s", "un jour"),
    ("root-hash-text", "sqlite", "root_hash = %s", "racine"),
    ("signature-blob", "sqlite", "signature = %s", b"\xff\xfe"),
    ("timestamp-infinity", "postgresql", "timestamp = 'infinity'", None),
]


@pytest.mark.parametrize(
    ("set_clause", "value"),
    [pytest.param(c, v, id=n) for n, vendors, c, v in TREE_HEAD_CASES if vendors in ("both", _vendor())],
)
def test_a_malformed_or_altered_signed_tree_head_is_reported(
    ledger: list[LedgerEvent], dpo_http: Any, set_clause: str, value: Any
) -> None:
    execute(f"UPDATE consent_treehead SET {set_clause}", [value] if "%s" in set_clause else [])
    result = ledger_verify()
    assert not result.ok
    details = [p.detail for p in result.problems]
    assert any(p.kind in ("tree_head", "missing") for p in result.problems), details
    _out, err, message = verify_by_command()
    assert "Traceback" not in err + message
    # The console page shows the latest well-formed head (none here) and verifies.
    assert dpo_http.get("/dpo/verification/").status_code == 200
    page = dpo_http.post("/dpo/verification/")
    assert page.status_code == 200 and "Registre altéré" in page.content.decode()
    assert dpo_http.get("/dpo/api/v1/tree-head").status_code in (200, 404)


@pytest.mark.parametrize(
    ("set_clause", "value"),
    [
        pytest.param("size = %s", 3, id="size-smaller"),
        pytest.param("size = %s", 12, id="size-larger"),
        pytest.param("root_hash = %s", b"\x00" * 5, id="root-short"),
        *(
            [
                pytest.param("size = %s", "huit", id="size-text"),
                pytest.param("root_hash = %s", "racine", id="root-text"),
            ]
            if _vendor() == "sqlite"
            else []
        ),
    ],
)
def test_a_malformed_ledger_head_row_is_reported(
    ledger: list[LedgerEvent], set_clause: str, value: Any
) -> None:
    execute(f"UPDATE consent_ledgerhead SET {set_clause} WHERE id = 1", [value])
    result = ledger_verify()
    assert not result.ok
    assert any(p.kind in ("head", "missing") for p in result.problems)
    _out, err, message = verify_by_command()
    assert "Traceback" not in err + message


def test_an_intact_ledger_still_verifies(ledger: list[LedgerEvent]) -> None:
    result = ledger_verify()
    assert result.ok, [p.detail for p in result.problems]
    assert result.size == EVENTS and result.tree_heads_checked == 1


# --- the DPO console and its API -------------------------------------------------------------


def test_the_dpo_console_shows_the_tampering_without_an_error(
    ledger: list[LedgerEvent], dpo_http: Any
) -> None:
    if connection.vendor == "sqlite":
        execute("UPDATE consent_ledgerevent SET id = 'not-a-uuid' WHERE seq = %s", [TARGET])
    else:
        execute("UPDATE consent_ledgerevent SET occurred_at = 'infinity' WHERE seq = %s", [TARGET])
    execute("UPDATE consent_treehead SET root_hash = %s", [b"\x00"])
    page = dpo_http.post("/dpo/verification/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Registre altéré" in text and f"event #{TARGET}" in text
    api = dpo_http.post("/dpo/api/v1/verify")
    assert api.status_code == 200
    assert api.json()["ok"] is False
    assert any(problem["seq"] == TARGET for problem in api.json()["problems"])


# --- a real process -------------------------------------------------------------------------

_SETUP = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.db import connection
from consent.services import consent_record, tree_head_sign
from identity.keys import signing_keys_ensure
from identity.services import user_create
signing_keys_ensure()
users = [user_create(email=f"r{i}@example.org", password=None) for i in range(2)]
for i in range(8):
    consent_record(user=users[i % 2], purpose_code="personalisation-declared",
                   event_type=("given", "withdrawn")[i % 2], collection_method="web_form")
tree_head_sign()
with connection.cursor() as cursor:
    for table in ("consent_ledgerevent", "consent_treehead"):
        for operation in ("update", "delete"):
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
    cursor.execute(SQL, PARAMS)
"""


@pytest.mark.parametrize(
    ("sql", "params", "expected"),
    [
        pytest.param("UPDATE consent_ledgerevent SET id = %s WHERE seq = 5", ["not-a-uuid"], "#5", id="id"),
        pytest.param(
            "UPDATE consent_ledgerevent SET occurred_at = %s WHERE seq = 5",
            ["2026-02-30 10:00:00"],
            "#5",
            id="time",
        ),
        pytest.param("UPDATE consent_ledgerevent SET seq = %s WHERE seq = 5", ["cinq"], "#5", id="seq"),
        pytest.param(
            "UPDATE consent_treehead SET tree_size = %s", ["huit"], "signed tree head", id="tree-head"
        ),
    ],
)
def test_manage_py_verify_ledger_exits_non_zero_without_a_traceback(
    tmp_path: Path, sql: str, params: list[Any], expected: str
) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    setup = f"SQL = {sql!r}\nPARAMS = {params!r}\n" + _SETUP
    prepared = subprocess.run(
        [sys.executable, "-c", setup], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    result = subprocess.run(
        [sys.executable, "manage.py", "verify_ledger"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "ledger verification FAILED" in result.stderr
    assert expected in result.stderr


# --- fuzzing ----------------------------------------------------------------------------------

COLUMNS = [
    "id",
    "seq",
    "event_type",
    "subject_id",
    "purpose_id",
    "purpose_code",
    "notice_id",
    "notice_version",
    "notice_sha256",
    "collection_method",
    "actor_type",
    "actor_id",
    "partner_client_id",
    "occurred_at",
    "valid_until",
    "linked_from",
    "details_ciphertext",
    "leaf_hash",
]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=EVENTS + 3),
    st.floats(allow_nan=False),
    st.text(max_size=70),
    st.binary(max_size=70),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(str),
    st.datetimes().map(str),
    st.sampled_from(
        ["given", "refused", "web_form", "resident", "infinity", "", "0" * 64, "2026-01-01 00:00:00"]
    ),
)


def _raw(column: str, seq: int) -> Any:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"SELECT typeof({column}), CAST({column} AS BLOB) FROM consent_ledgerevent WHERE rowid = "
                "(SELECT rowid FROM consent_ledgerevent WHERE seq = %s)",
                [seq],
            )
        else:
            cursor.execute(f"SELECT {column}::text FROM consent_ledgerevent WHERE seq = %s", [seq])
        return cursor.fetchone()


@settings(
    max_examples=int(os.environ.get("LEDGER_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(position=st.integers(min_value=0, max_value=EVENTS - 1), column=st.sampled_from(COLUMNS), value=values)
def test_fuzz_one_column_of_one_row(
    ledger: list[LedgerEvent], position: int, column: str, value: Any
) -> None:
    """Any value written into any column of any row: reported at that row's position, or,
    when the database stored exactly what was there, not reported at all; never an exception."""
    savepoint = transaction.savepoint()
    try:
        before = _raw(column, position)
        try:
            with transaction.atomic():
                execute(f"UPDATE consent_ledgerevent SET {column} = %s WHERE seq = %s", [value, position])
        except (DatabaseError, OverflowError, TypeError, ValueError):
            assume(False)  # the database refused the value: nothing to verify
        if column == "seq":
            changed = position not in LedgerEvent.objects.values_list("seq", flat=True)
        else:
            changed = _raw(column, position) != before
        result = ledger_verify()
        if not changed:
            assert result.ok, [p.detail for p in result.problems]
        else:
            assert not result.ok
            assert names_position(result, position), (column, value, [p.detail for p in result.problems])
    finally:
        transaction.savepoint_rollback(savepoint)
