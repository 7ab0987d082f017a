"""Hot statements on a cursor kept per database connection, prepared where the deployment allows.

Django's psycopg 3 cursors bind parameters on the client (the whole statement travels as
text and the server parses and plans it at every call). For the few statements run at a
high rate with a fixed text — the consent gate, the ledger proofs, the token endpoint's reads
and writes, the browser session's note of a token — `prepared_cursor()` gives, on PostgreSQL,
a server-binding psycopg cursor that executes every statement as a prepared statement (psycopg
keeps them per connection, the least recently used dropped beyond `prepared_max`); the server
then only binds and executes. It is wrapped like any Django cursor (database errors
converted, queries logged and counted in DEBUG and in tests). On other databases it is the
connection's `cursor()`.

Prepared statements live in the server session: behind a pooler in transaction mode
(PgBouncer < 1.21 without `max_prepared_statements`) they would not be found again. So they
follow the deployment's switch, the setting `CONSENT_PREPARED_STATEMENTS` = the environment's
`DATABASE_PREPARED_STATEMENTS` (config/settings.py, docs/operators.md; read here through
django.conf.settings, this module imports no app of the project), off by default: the
statements then run unprepared, one round trip each all the same.

`kept_fetch(sql, params)` runs one such statement and returns its rows (`fetchone()`, or
`fetchall()` with `all_rows`); `kept_rowcount(sql, params)` runs one and returns the number of
rows it changed (an UPDATE or DELETE without RETURNING); with `server_binding=True` either runs
an unprepared statement on a second kept cursor that binds its parameters on the server (the
userinfo read's bare call of a PL/pgSQL function; the token endpoint's reads and writes and
the browser session's note: the parameters then travel apart from the text instead of being
quoted into it by psycopg, less client CPU per call). When no one watches the queries, they
keep one cursor per database connection (server-binding and preparing with prepared
statements on, else the backend's own cursor class) and execute on it directly: what a Django
cursor does around a statement (the health check once per request, the check that the
transaction is not broken, the conversion of database errors into django.db's) without
building a cursor and its wrapper each time (about half the client CPU of a one-row lookup,
issue 14). The kept cursor is one more cursor of the same connection: inside `atomic()` its
statements are in the transaction like any other (rolled back with it). It is made again when
the connection was closed and reopened (another psycopg connection), when the switch changed
or when it was closed. When queries are logged (DEBUG, tests' query capture) or execute
wrappers are installed, the statement goes through `prepared_cursor()` so that they see it as
before. On SQLite (tests, the demo) both are the Django cursor's execute, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

_ONLY_WHEN_ASKED = 2**31 - 1
_KEPT = "_kept_cursor"  # the attribute of the connection wrapper (thread-local) holding it
_KEPT_SERVER_BINDING = "_kept_server_binding_cursor"  # the same, binding on the server


class PreparingCursor(psycopg.Cursor[Any]):
    """psycopg's server-binding cursor, asking for a prepared statement at every execute."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        return super().execute(query, params, prepare=True, binary=binary)


def prepared_statements() -> bool:
    """The deployment's switch (DATABASE_PREPARED_STATEMENTS)."""
    return bool(getattr(settings, "CONSENT_PREPARED_STATEMENTS", False))


def _allow_prepared(raw: Any) -> None:
    if raw.prepare_threshold is None:
        # Django leaves it None, which disables prepared statements altogether (even those
        # asked for explicitly). A threshold never reached keeps every other statement as it
        # was (Django's client-binding cursors are never prepared anyway); ours ask each time.
        raw.prepare_threshold = _ONLY_WHEN_ASKED


def prepared_cursor(db: BaseDatabaseWrapper | None = None) -> Any:
    """A Django cursor (use it as a context manager) on `db` (the default database's
    connection if None), preparing its statements on PostgreSQL when the switch is on."""
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or not prepared_statements():
        return db.cursor()
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = db.connection
    _allow_prepared(raw)
    with db.wrap_database_errors:
        # What connection.cursor() does, with our cursor class in place of the backend's.
        return db._prepare_cursor(PreparingCursor(raw))  # type: ignore[attr-defined]


def _kept(db: BaseDatabaseWrapper, server_binding: bool = False) -> Any | None:
    """`db`'s kept raw cursor, after what connection.cursor() and CursorWrapper.execute check
    before a statement, in their order; None when the statement must go through a Django
    cursor (not PostgreSQL, queries logged, execute wrappers installed). `server_binding`:
    the kept server-binding cursor (psycopg's `Cursor`; the preparing one when the switch is
    on), a second cursor of the same connection."""
    if db.vendor != "postgresql" or db.queries_logged or db.execute_wrappers:
        return None
    prepared = prepared_statements()
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_no_broken_transaction()
    raw = db.connection
    attribute = _KEPT_SERVER_BINDING if server_binding and not prepared else _KEPT
    kept = getattr(db, attribute, None)
    if kept is None or kept[0] is not raw or kept[1] is not prepared or kept[2].closed:
        db.validate_thread_sharing()
        cursor: psycopg.Cursor[Any]
        if prepared:
            _allow_prepared(raw)
            cursor = PreparingCursor(raw)
        elif server_binding:
            cursor = psycopg.Cursor(raw)
        else:
            with db.wrap_database_errors:
                cursor = db.create_cursor()  # the backend's own cursor class, unwrapped
        kept = (raw, prepared, cursor)
        setattr(db, attribute, kept)
    return kept[2]


def _run(
    sql: str,
    params: Any,
    db: BaseDatabaseWrapper | None,
    take: Callable[[Any], Any],
    server_binding: bool = False,
) -> Any:
    """Execute `sql` on `db`'s kept cursor (or, when queries are watched, a Django cursor)
    and return `take(cursor)`."""
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]
    cursor = _kept(db, server_binding)
    if cursor is None:
        with prepared_cursor(db) as wrapped:
            wrapped.execute(sql, params)
            return take(wrapped)
    with db.wrap_database_errors:
        cursor.execute(sql, params)
        return take(cursor)


def _all_rows(cursor: Any) -> Any:
    return cursor.fetchall()


def _one_row(cursor: Any) -> Any:
    return cursor.fetchone()


def _rowcount(cursor: Any) -> int:
    return int(cursor.rowcount)


def kept_fetch(
    sql: str,
    params: Any,
    *,
    all_rows: bool = False,
    db: BaseDatabaseWrapper | None = None,
    server_binding: bool = False,
) -> Any:
    """Run `sql` (prepared when the deployment allows it) and return `fetchone()`, or
    `fetchall()` with `all_rows`, on `db` (the default database's connection if None).

    `server_binding`: unprepared too, the parameters travel apart from the statement (the
    extended protocol's unnamed statement) instead of being quoted into its text by the
    client: less client CPU per call. For statements whose parameters PostgreSQL types the
    same either way (a function's declared arguments, a column compared with or assigned a
    parameter: as when the statement is prepared, which binds on the server too); the rows
    are read by the same loaders. When queries are watched the Django cursor runs it,
    binding on the client."""
    return _run(sql, params, db, _all_rows if all_rows else _one_row, server_binding)


def kept_rowcount(
    sql: str, params: Any, *, db: BaseDatabaseWrapper | None = None, server_binding: bool = False
) -> int:
    """Run `sql` (an UPDATE or DELETE; prepared when the deployment allows it) on `db` (the
    default database's connection if None) and return the number of rows it changed.
    `server_binding` as for `kept_fetch`."""
    return int(_run(sql, params, db, _rowcount, server_binding))
