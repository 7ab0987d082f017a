"""common/kept_cursor.py: statements on a cursor kept per connection (prepared when
DATABASE_PREPARED_STATEMENTS allows) behave as on a Django cursor: same answers, in the
caller's transaction (rolled back with it), database errors raised as django.db's, the
statements seen by query capture and execute wrappers, a new cursor after a reconnection."""

from __future__ import annotations

from typing import Any

import django.db.utils
import psycopg
import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from common.kept_cursor import kept_fetch, kept_rowcount, prepared_cursor

postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'")
prepared_or_not = pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "unprepared"])

TABLE = "kept_cursor_probe"
INSERT = f"INSERT INTO {TABLE} (id, label) VALUES (%s, %s) RETURNING id"
SELECT = f"SELECT label FROM {TABLE} WHERE id = %s"
UPDATE = f"UPDATE {TABLE} SET label = %s WHERE id >= %s"


@pytest.fixture
def probe(db: Any) -> Any:
    """A table of the test's own (in its transaction: gone with it)."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, label varchar(20) NOT NULL)")
    yield TABLE


def _django_select(pk: int) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(SELECT, [pk])
        return cursor.fetchone()


def _kept() -> Any:
    return getattr(connection, "_kept_cursor", None)


def test_answers_as_a_django_cursor_on_every_database(probe: Any) -> None:
    assert kept_fetch(INSERT, [1, "un"]) == (1,)
    assert kept_fetch(INSERT, [2, "deux"], db=connection) == (2,)
    assert kept_fetch(SELECT, [1]) == _django_select(1) == ("un",)
    assert kept_fetch(SELECT, [3]) is None
    assert kept_fetch(f"SELECT id FROM {TABLE} ORDER BY id", [], all_rows=True) == [(1,), (2,)]
    assert kept_rowcount(UPDATE, ["plus", 2]) == 1
    assert kept_rowcount(UPDATE, ["rien", 9]) == 0
    assert _django_select(2) == ("plus",)


def test_a_duplicate_key_is_djangos_integrity_error(probe: Any) -> None:
    kept_fetch(INSERT, [1, "un"])
    with pytest.raises(django.db.utils.IntegrityError), transaction.atomic():
        kept_fetch(INSERT, [1, "encore"])
    assert kept_fetch(SELECT, [1]) == ("un",)


@postgresql_only
@prepared_or_not
def test_the_cursor_is_kept_per_connection_and_follows_the_switch(
    probe: Any, settings: Any, prepared: bool
) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    assert not connection.queries_logged
    kept_fetch(INSERT, [1, "un"])
    kept = _kept()
    assert kept[0] is connection.connection and kept[1] is prepared
    assert kept_fetch(SELECT, [1]) == ("un",)
    assert kept_rowcount(UPDATE, ["deux", 1]) == 1
    assert _kept() is kept  # one cursor per connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = {row[0] for row in cursor.fetchall()}
    # psycopg rewrites the placeholders as $1, $2 for the server.
    assert (SELECT.replace("%s", "$1") in statements) is prepared
    assert (UPDATE.replace("%s", "$1", 1).replace("%s", "$2") in statements) is prepared
    settings.CONSENT_PREPARED_STATEMENTS = not prepared
    assert kept_fetch(SELECT, [1]) == ("deux",)
    assert _kept()[1] is not prepared and _kept()[2] is not kept[2]


@postgresql_only
@prepared_or_not
def test_server_binding_answers_as_the_kept_cursor_on_a_cursor_of_its_own(
    probe: Any, settings: Any, prepared: bool
) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    if hasattr(connection, "_kept_server_binding_cursor"):  # kept from an earlier test
        delattr(connection, "_kept_server_binding_cursor")
    kept_fetch(INSERT, [1, "un"])
    assert kept_fetch(INSERT, [2, "deux"], server_binding=True) == (2,)
    assert kept_fetch(SELECT, [2], server_binding=True) == kept_fetch(SELECT, [2]) == ("deux",)
    assert kept_fetch(SELECT, [3], server_binding=True) is None
    rows = kept_fetch(f"SELECT id, label FROM {TABLE} ORDER BY id", [], all_rows=True, server_binding=True)
    assert rows == [(1, "un"), (2, "deux")]
    # A server-binding cursor (the preparing one when the switch is on), kept per connection.
    binding = getattr(connection, "_kept_server_binding_cursor", None)
    if prepared:
        assert binding is None
    else:
        assert binding[0] is connection.connection and binding[2] is not _kept()[2]
        assert type(binding[2]) is psycopg.Cursor  # not the client-binding ClientCursor
        assert kept_fetch(SELECT, [1], server_binding=True) == ("un",)
        assert getattr(connection, "_kept_server_binding_cursor", None) is binding
    # In the caller's transaction too, and its errors are Django's.
    with pytest.raises(django.db.utils.IntegrityError), transaction.atomic():
        kept_fetch(INSERT, [1, "encore"], server_binding=True)
    assert kept_fetch(SELECT, [1], server_binding=True) == ("un",)


@postgresql_only
@prepared_or_not
def test_in_the_callers_transaction_and_rolled_back_with_it(
    probe: Any, settings: Any, prepared: bool
) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    kept_fetch(INSERT, [1, "un"])

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        kept_fetch(INSERT, [2, "deux"])
        assert kept_rowcount(UPDATE, ["changé", 1]) == 2
        assert _django_select(2) == ("changé",)  # one transaction: the Django cursor sees it
        raise Undo
    assert kept_fetch(SELECT, [2]) is None
    assert _django_select(1) == ("un",)


@postgresql_only
@prepared_or_not
@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_nothing(settings: Any, prepared: bool) -> None:
    """Outside any test transaction: atomic()'s BEGIN and ROLLBACK cover the kept cursor."""
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, label varchar(20) NOT NULL)")
    try:

        class Undo(Exception):
            pass

        with pytest.raises(Undo), transaction.atomic():
            kept_fetch(INSERT, [1, "un"])
            assert kept_fetch(SELECT, [1]) == ("un",)
            raise Undo
        assert _django_select(1) is None
        with transaction.atomic():
            kept_fetch(INSERT, [2, "deux"])
        assert connection.get_autocommit()
        assert _django_select(2) == ("deux",)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {TABLE}")


@postgresql_only
@prepared_or_not
def test_errors_are_djangos_and_a_broken_transaction_is_refused(
    probe: Any, settings: Any, prepared: bool
) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    kept_fetch(INSERT, [1, "un"])
    with pytest.raises(django.db.utils.ProgrammingError), transaction.atomic():
        kept_fetch(f"SELECT no_such_column FROM {TABLE}", [])
    with pytest.raises(django.db.utils.DataError), transaction.atomic():
        kept_rowcount(UPDATE, ["x" * 50, 1])  # longer than varchar(20)
    with transaction.atomic():
        with pytest.raises(django.db.utils.IntegrityError), transaction.atomic(savepoint=False):
            kept_fetch(INSERT, [1, "encore"])
        with pytest.raises(TransactionManagementError):  # as a Django cursor refuses it
            kept_fetch(SELECT, [1])
        with pytest.raises(TransactionManagementError):
            kept_rowcount(UPDATE, ["deux", 1])
    assert kept_fetch(SELECT, [1]) == ("un",)


@postgresql_only
@prepared_or_not
@pytest.mark.django_db(transaction=True)
def test_a_new_cursor_after_the_connection_is_closed(settings: Any, prepared: bool) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    assert kept_fetch("SELECT %s::integer + 1", [1]) == (2,)
    first = _kept()
    connection.close()  # as at the end of a request past CONN_MAX_AGE, or after an error
    assert kept_fetch("SELECT %s::integer + 1", [2]) == (3,)
    kept = _kept()
    assert kept[0] is connection.connection and kept[0] is not first[0] and kept[2] is not first[2]
    kept[2].close()  # closed behind our back: made again
    assert kept_rowcount("SELECT 1 WHERE %s", [True]) == 1
    assert _kept()[2] is not kept[2] and not _kept()[2].closed


@postgresql_only
@prepared_or_not
def test_captured_queries_and_execute_wrappers_see_the_statements(
    probe: Any, settings: Any, prepared: bool
) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    with CaptureQueriesContext(connection) as queries:
        kept_fetch(INSERT, [1, "un"])
        assert kept_fetch(SELECT, [1]) == ("un",)
        assert kept_rowcount(UPDATE, ["deux", 1]) == 1
    assert len(queries.captured_queries) == 3
    if not prepared:  # (Django cannot show a server-bound statement's text: None, as before)
        assert [query["sql"] for query in queries.captured_queries] == [
            INSERT.replace("%s", "1", 1).replace("%s", "'un'"),
            SELECT.replace("%s", "1"),
            UPDATE.replace("%s", "'deux'", 1).replace("%s", "1"),
        ]
    seen = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql, list(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        assert kept_fetch(SELECT, [1]) == ("deux",)
        assert kept_rowcount(UPDATE, ["trois", 1]) == 1
    assert seen == [(SELECT, [1]), (UPDATE, ["trois", 1])]


@postgresql_only
@prepared_or_not
def test_prepared_cursor_is_a_wrapped_django_cursor(probe: Any, settings: Any, prepared: bool) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    with CaptureQueriesContext(connection) as queries, prepared_cursor(connection) as cursor:
        cursor.execute(INSERT, [1, "un"])
        assert cursor.fetchone() == (1,)
    assert len(queries.captured_queries) == 1
    with pytest.raises(django.db.utils.IntegrityError), transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute(INSERT, [1, "encore"])
