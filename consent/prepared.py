"""The consent gate's and the ledger's hot statements: prepared, on a kept cursor.

The mechanism lives in common/kept_cursor.py (the token endpoint's statements, in identity,
use it too, and identity may not import consent); its names are kept here for consent's
modules: `prepared_cursor()` (a Django cursor preparing its statements on PostgreSQL when
`DATABASE_PREPARED_STATEMENTS` allows it) and `prepared_fetch(sql, params)` (one statement on
the cursor kept per connection, `common.kept_cursor.kept_fetch`).

`fetch_in_turn(statements)` runs several statements one after the other and returns the first
row of each: on PostgreSQL, when nothing watches the queries and prepared statements are off,
in one round trip (one query string of several statements, psycopg's client-binding cursor
sending it with the simple query protocol: the server runs them in order, each in a snapshot
of its own taken once the one before has finished, as one by one); elsewhere one
`prepared_fetch` each. An error in one stops the ones after it (the transaction is then
aborted, as one by one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from common.kept_cursor import kept_fetch as prepared_fetch
from common.kept_cursor import prepared_cursor, prepared_statements

__all__ = ["fetch_in_turn", "prepared_cursor", "prepared_fetch"]

_IN_TURN_CURSOR = "_consent_in_turn_cursor"  # the attribute of the connection wrapper


def _in_turn_cursor() -> Any | None:
    """The cursor of the default connection kept for `fetch_in_turn` (the backend's own cursor
    class, unwrapped: it binds parameters on the client, as Django's do, and sends a statement
    with the simple query protocol, which may hold several), after the checks a Django cursor
    makes before a statement; None when the statements must run one by one."""
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: not the proxy's lookup per attribute
    if db.vendor != "postgresql" or db.queries_logged or db.execute_wrappers or prepared_statements():
        return None
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_no_broken_transaction()
    raw = db.connection
    kept = getattr(db, _IN_TURN_CURSOR, None)
    if kept is None or kept[0] is not raw or kept[1].closed:
        db.validate_thread_sharing()
        with db.wrap_database_errors:
            kept = (raw, db.create_cursor())
        setattr(db, _IN_TURN_CURSOR, kept)
    return kept[1]


def fetch_in_turn(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
    """The first row (or None) of each of `statements`, run in order on the default
    connection: in one round trip where possible (module docstring), else one by one."""
    cursor = _in_turn_cursor()
    if cursor is None:
        return [prepared_fetch(sql, params) for sql, params in statements]
    with connections[DEFAULT_DB_ALIAS].wrap_database_errors:
        params = [value for _sql, values in statements for value in values]
        cursor.execute("; ".join(sql for sql, _params in statements), params)
        rows = [cursor.fetchone()]
        while cursor.nextset():
            rows.append(cursor.fetchone())
    if len(rows) != len(statements):
        raise RuntimeError("fetch_in_turn: one result per statement expected")
    return rows
