"""A cursor whose statements PostgreSQL parses and plans once per connection (hot paths).

Django's psycopg 3 cursors bind parameters on the client (the whole statement travels as
text and the server parses and plans it at every call). For the few statements run at a
high rate with a fixed text — the consent gate, the proof reads — `prepared_cursor()` gives,
on PostgreSQL, a server-binding psycopg cursor that executes every statement as a prepared
statement (psycopg keeps them per connection, the least recently used dropped beyond
`prepared_max`); the server then only binds and executes. It is wrapped like any Django
cursor (database errors converted, queries logged and counted in DEBUG and in tests). On
other databases it is `connection.cursor()`.

Prepared statements live in the server session: behind a pooler in transaction mode
(PgBouncer < 1.21 without `max_prepared_statements`) they would not be found again. So they
follow the deployment's switch, `CONSENT_PREPARED_STATEMENTS` = the environment's
`DATABASE_PREPARED_STATEMENTS` (config/settings.py, docs/operators.md), off by default: the
statements then run unprepared, one round trip each all the same.

`prepared_fetch(sql, params)` runs one such statement and returns its rows, for the hottest
reads (the gate, proofs). When no one watches the queries, it keeps one cursor per database
connection (server-binding and preparing with prepared statements on, else the backend's own
cursor class) and executes on it directly: what a
Django cursor does around a statement (the health check once per request, the check that the
transaction is not broken, the conversion of database errors) without building a cursor and
its wrapper each time (about half the client CPU of a gate lookup, issue 14). When queries are
logged (DEBUG, tests' query capture) or execute wrappers are installed, it goes through
`prepared_cursor()` so that they see the statement as before.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

_ONLY_WHEN_ASKED = 2**31 - 1


class _PreparingCursor(psycopg.Cursor[Any]):
    """psycopg's server-binding cursor, asking for a prepared statement at every execute."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        return super().execute(query, params, prepare=True, binary=binary)


def prepared_cursor() -> Any:
    """A Django cursor (use it as a context manager) preparing its statements on PostgreSQL."""
    if connection.vendor != "postgresql" or not getattr(settings, "CONSENT_PREPARED_STATEMENTS", False):
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django leaves it None, which disables prepared statements altogether (even those
        # asked for explicitly). A threshold never reached keeps every other statement as it
        # was (Django's client-binding cursors are never prepared anyway); ours ask each time.
        raw.prepare_threshold = _ONLY_WHEN_ASKED
    with connection.wrap_database_errors:
        # What connection.cursor() does, with our cursor class in place of the backend's.
        return connection._prepare_cursor(_PreparingCursor(raw))  # type: ignore[attr-defined]


def prepared_fetch(
    sql: str, params: Any, *, all_rows: bool = False, db: BaseDatabaseWrapper | None = None
) -> Any:
    """Run `sql` as `prepared_cursor()` would (prepared when the deployment allows it) and
    return `fetchone()`, or `fetchall()` with `all_rows`, on the default database (`db`: its
    connection, when the caller has it already)."""
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or db.queries_logged or db.execute_wrappers:
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if all_rows else cursor.fetchone()
    prepared = bool(getattr(settings, "CONSENT_PREPARED_STATEMENTS", False))
    # What connection.cursor() and CursorWrapper.execute do, in order.
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_no_broken_transaction()
    raw = db.connection
    kept = getattr(db, "_consent_kept_cursor", None)
    if kept is None or kept[0] is not raw or kept[1] is not prepared or kept[2].closed:
        db.validate_thread_sharing()
        if prepared:
            if raw.prepare_threshold is None:
                raw.prepare_threshold = _ONLY_WHEN_ASKED  # see prepared_cursor()
            cursor = _PreparingCursor(raw)
        else:
            cursor = db.create_cursor()  # the backend's own cursor class, unwrapped
        kept = (raw, prepared, cursor)
        db._consent_kept_cursor = kept  # type: ignore[attr-defined]
    cursor = kept[2]
    with db.wrap_database_errors:
        cursor.execute(sql, params)
        return cursor.fetchall() if all_rows else cursor.fetchone()
