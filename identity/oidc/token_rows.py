"""The rows a token request redeems, each read in one statement with what it needs.

A refresh reads the presented refresh token, its access token's expiry and scope, the
resident and the browser session the token was issued in; a code redemption reads the
authorization code, the resident and the session. Through the ORM that was a three-table
`select_related(...).only(...)` (the SQL compiler alone cost more CPU than the database)
and a second statement for the session (`browser_session_by_sid`). Here the statement is
built once per process from the models' metadata (table and column names quoted by the
connection, values always parameters), and the rows become model instances exactly as the
ORM makes them: `Model.from_db` after each column's database converters (JSON, and on
SQLite dates, UUIDs and booleans). Columns not read are deferred, as with `.only()`. Which
columns have converters, and where each model's concrete fields sit in the row, are worked
out with the statement, so that a read only runs the converters there are and hands
`Model.from_db` a value (or DEFERRED) for every field, the list it would otherwise build
by searching the attnames.

The session is joined on its `sid` (unique): `session` is None when the row has no `sid`
or no session has it. The reads lock nothing: the callers claim the row afterwards with a
conditional UPDATE (identity/oidc/request_validator.py).

A code redemption at our own token endpoint claims first (`claimed_code_row`): on
PostgreSQL the claim and the read are one statement, a data-modifying CTE whose UPDATE
marks the code redeemed for its client, if no one did first, and returns the row, joined
as `code_row` joins it; elsewhere the same UPDATE, then `code_row`. Nothing is returned
when no row was claimed (unknown, another client's, already redeemed): the caller then
reads the code with `code_row` to tell a replay from the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.models import Field, Model
from django.db.models.base import DEFERRED
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from common.kept_cursor import kept_fetch, kept_rowcount
from identity.models import BrowserSession, User

# The refresh-token columns a refresh needs (validation, rotation, the new tokens' claims).
REFRESH_TOKEN_FIELDS = (
    "id",
    "user",
    "application",
    "access_token",
    "created",
    "token_family",
    "revoked",
    "resource",
    "auth_time",
    "sid",
    "claims_request",
    "acr",
    "amr",
    "dpop_jkt",
)
ACCESS_TOKEN_FIELDS = ("id", "expires", "scope")  # its expiry slides the refresh token's
SESSION_FIELDS = ("id", "sid", "acr", "amr", "ended_at")  # the ID token's sid, acr, amr


@dataclass(frozen=True)
class _Part:
    """One table of the statement: its model, its alias and the fields read from it."""

    model: type[Model]
    alias: str
    fields: tuple[Field, ...]


def _part(model: type[Model], alias: str, names: Sequence[str] | None = None) -> _Part:
    concrete = model._meta.concrete_fields
    if names is None:
        return _Part(model, alias, tuple(concrete))
    wanted = {_field(model, name).attname for name in names}
    # In the model's column order, as Model.from_db expects them.
    return _Part(model, alias, tuple(field for field in concrete if field.attname in wanted))


@dataclass(frozen=True)
class _Layout:
    """Where one part's instance comes from in the row: the position of its first column
    (its primary key), the attnames read, and for each of the model's concrete fields the
    position of its column in the row, or None for a field not read (deferred)."""

    model: type[Model]
    start: int
    attnames: list[str]
    positions: tuple[int | None, ...]


@dataclass
class _Statement:
    sql: str
    parts: tuple[_Part, ...]
    # The columns that have database converters: (position in the row, converters, column).
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]
    layouts: tuple[_Layout, ...]


_statements: dict[tuple[str, str], _Statement] = {}


def _statement(kind: str, using: str, build: Callable[[Any], tuple[str, tuple[_Part, ...]]]) -> _Statement:
    key = (kind, using)
    cached = _statements.get(key)
    if cached is None:
        connection = connections[using]
        sql, parts = build(connection)
        converters = []
        layouts = []
        position = 0
        for part in parts:
            positions = {}
            for field in part.fields:
                column: Any = field.get_col(part.alias)
                found = connection.ops.get_db_converters(column) + column.field.get_db_converters(connection)
                if found:
                    converters.append((position, tuple(found), column))
                positions[field.attname] = position
                position += 1
            layouts.append(
                _Layout(
                    model=part.model,
                    start=positions[part.fields[0].attname],
                    attnames=list(positions),
                    positions=tuple(positions.get(f.attname) for f in part.model._meta.concrete_fields),
                )
            )
        cached = _statements[key] = _Statement(sql, parts, tuple(converters), tuple(layouts))
    return cached


def _columns(connection: Any, parts: Sequence[_Part]) -> str:
    quote = connection.ops.quote_name
    return ", ".join(f"{part.alias}.{quote(field.column)}" for part in parts for field in part.fields)


def _table(connection: Any, model: type[Model]) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


def _field(model: type[Model], name: str) -> Any:
    return model._meta.get_field(name)


def _column(connection: Any, model: type[Model], name: str) -> str:
    return str(connection.ops.quote_name(_field(model, name).column))


def _instances(statement: _Statement, using: str, row: Sequence[Any]) -> list[Model | None]:
    """One instance per part (None for a LEFT JOIN that found nothing), as the ORM builds them:
    the columns' converters, then `Model.from_db` with a value (or DEFERRED) for every
    concrete field, the list `from_db` would otherwise build itself from the attnames."""
    connection = connections[using]
    values = list(row)
    for index, converters, column in statement.converters:
        value = values[index]
        for converter in converters:
            value = converter(value, column, connection)
        values[index] = value
    instances: list[Model | None] = []
    for layout in statement.layouts:
        if values[layout.start] is None:  # the primary key: the joined row is absent
            instances.append(None)
            continue
        fields = [DEFERRED if index is None else values[index] for index in layout.positions]
        instances.append(layout.model.from_db(using, layout.attnames, fields))
    return instances


def _fetch_one(statement: _Statement, using: str, params: Sequence[Any]) -> Sequence[Any] | None:
    # On the connection's kept cursor (common/kept_cursor.py): no Django cursor built per
    # call, prepared where DATABASE_PREPARED_STATEMENTS allows, else the parameters bound on
    # the server (typed as when prepared: PostgreSQL types each from its column); a Django
    # cursor when queries are logged, and on SQLite.
    row: Sequence[Any] | None = kept_fetch(statement.sql, params, db=connections[using], server_binding=True)
    return row


@dataclass
class TokenRow:
    """The row read, its resident set on it (and its access token, for a refresh token), and
    the browser session it was issued in."""

    row: Any
    session: BrowserSession | None


def _refresh_statement(connection: Any) -> tuple[str, tuple[_Part, ...]]:
    refresh_model, access_model = get_refresh_token_model(), get_access_token_model()
    parts = (
        _part(refresh_model, "r", REFRESH_TOKEN_FIELDS),
        _part(access_model, "a", ACCESS_TOKEN_FIELDS),
        _part(User, "u"),
        _part(BrowserSession, "s", SESSION_FIELDS),
    )
    rt_sid, s_sid = _column(connection, refresh_model, "sid"), _column(connection, BrowserSession, "sid")
    revoked = _column(connection, refresh_model, "revoked")
    access_id = _column(connection, refresh_model, "access_token")
    sql = (
        f"SELECT {_columns(connection, parts)} "  # noqa: S608 - identifiers from the models' metadata
        f"FROM {_table(connection, refresh_model)} r "
        f"INNER JOIN {_table(connection, User)} u "
        f"ON u.{_column(connection, User, 'id')} = r.{_column(connection, refresh_model, 'user')} "
        f"LEFT JOIN {_table(connection, access_model)} a "
        f"ON a.{_column(connection, access_model, 'id')} = r.{access_id} "
        f"LEFT JOIN {_table(connection, BrowserSession)} s ON s.{s_sid} = r.{rt_sid} AND r.{rt_sid} <> '' "
        f"WHERE r.{_column(connection, refresh_model, 'token_checksum')} = %s "
        # Several rows may share a checksum (uniqueness is (token_checksum, revoked)): the
        # live one if any, else the most recently revoked.
        f"ORDER BY CASE WHEN r.{revoked} IS NULL THEN 0 ELSE 1 END, r.{revoked} DESC "
        "LIMIT 1"
    )
    return sql, parts


def refresh_token_row(refresh_token: str) -> TokenRow | None:
    """The refresh token presented (by the SHA-256 it is stored as), with `user` and
    `access_token` (id, expires, scope; None once revoked) set, and its session."""
    model = get_refresh_token_model()
    using = router.db_for_read(model)
    statement = _statement("refresh", using, _refresh_statement)
    checksum = hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()
    row = _fetch_one(statement, using, [checksum])
    if row is None:
        return None
    refresh, access, user, session = _instances(statement, using, row)
    assert refresh is not None and user is not None  # the INNER JOIN and the WHERE
    refresh.user = user  # type: ignore[attr-defined]
    refresh.access_token = access  # type: ignore[attr-defined]
    return TokenRow(refresh, session)  # type: ignore[arg-type]


def _code_statement(connection: Any) -> tuple[str, tuple[_Part, ...]]:
    grant_model = get_grant_model()
    parts = (_part(grant_model, "g"), _part(User, "u"), _part(BrowserSession, "s", SESSION_FIELDS))
    g_sid, s_sid = _column(connection, grant_model, "sid"), _column(connection, BrowserSession, "sid")
    sql = (
        f"SELECT {_columns(connection, parts)} "  # noqa: S608 - identifiers from the models' metadata
        f"FROM {_table(connection, grant_model)} g "
        f"INNER JOIN {_table(connection, User)} u "
        f"ON u.{_column(connection, User, 'id')} = g.{_column(connection, grant_model, 'user')} "
        f"LEFT JOIN {_table(connection, BrowserSession)} s ON s.{s_sid} = g.{g_sid} AND g.{g_sid} <> '' "
        f"WHERE g.{_column(connection, grant_model, 'code')} = %s "
        "LIMIT 1"
    )
    return sql, parts


def code_row(code: str) -> TokenRow | None:
    """The authorization code presented (stored as its SHA-256, HashedTokenField), whichever
    client it is for, with `user` set, and its session."""
    model = get_grant_model()
    using = router.db_for_read(model)
    statement = _statement("code", using, _code_statement)
    digest = _field(model, "code").get_prep_value(code)
    row = _fetch_one(statement, using, [digest])
    if row is None:
        return None
    grant, user, session = _instances(statement, using, row)
    assert grant is not None and user is not None
    grant.user = user  # type: ignore[attr-defined]
    return TokenRow(grant, session)  # type: ignore[arg-type]


def _claim_columns(connection: Any) -> tuple[str, str, str, str, str]:
    grant_model = get_grant_model()
    return (
        _table(connection, grant_model),
        _column(connection, grant_model, "redeemed_at"),
        _column(connection, grant_model, "token_family"),
        _column(connection, grant_model, "code"),
        _column(connection, grant_model, "application"),
    )


def _claimed_code_statement(connection: Any) -> tuple[str, tuple[_Part, ...]]:
    """PostgreSQL: the claim (an UPDATE ... RETURNING in a CTE) and code_row's joins."""
    grant_model = get_grant_model()
    parts = (_part(grant_model, "g"), _part(User, "u"), _part(BrowserSession, "s", SESSION_FIELDS))
    table, redeemed, family, code, application = _claim_columns(connection)
    quote = connection.ops.quote_name
    returned = ", ".join(quote(field.column) for field in parts[0].fields)
    g_sid, s_sid = _column(connection, grant_model, "sid"), _column(connection, BrowserSession, "sid")
    sql = (
        f"WITH g AS (UPDATE {table} SET {redeemed} = %s, {family} = %s "  # noqa: S608 - metadata
        f"WHERE {code} = %s AND {application} = %s AND {redeemed} IS NULL RETURNING {returned}) "
        f"SELECT {_columns(connection, parts)} FROM g "
        f"INNER JOIN {_table(connection, User)} u "
        f"ON u.{_column(connection, User, 'id')} = g.{_column(connection, grant_model, 'user')} "
        f"LEFT JOIN {_table(connection, BrowserSession)} s ON s.{s_sid} = g.{g_sid} AND g.{g_sid} <> ''"
    )
    return sql, parts


_claim_updates: dict[str, str] = {}


def claimed_code_row(code: str, client_pk: Any, family: Any) -> TokenRow | None:
    """Mark the authorization code presented redeemed, if it is `client_pk`'s and no one did
    first, recording the token family its redemption will issue (the ORM's
    `filter(code=…, application=…, redeemed_at__isnull=True).update(redeemed_at=now,
    token_family=family)`), and read it as `code_row` reads it (after the claim: its
    `redeemed_at` and `token_family` set). None when nothing was claimed: the code is
    unknown, another client's (left untouched) or already redeemed."""
    model = get_grant_model()
    using = router.db_for_write(model)
    connection = connections[using]
    params = [
        _field(model, "redeemed_at").get_db_prep_save(timezone.now(), connection),
        _field(model, "token_family").get_db_prep_save(family, connection),
        _field(model, "code").get_prep_value(code),
        client_pk,
    ]
    if connection.vendor == "postgresql":
        statement = _statement("claimed_code", using, _claimed_code_statement)
        row = _fetch_one(statement, using, params)
        if row is None:
            return None
        grant, user, session = _instances(statement, using, row)
        assert grant is not None and user is not None  # the INNER JOIN and the RETURNING
        grant.user = user  # type: ignore[attr-defined]
        return TokenRow(grant, session)  # type: ignore[arg-type]
    sql = _claim_updates.get(using)
    if sql is None:
        table, redeemed, family_column, code_column, application = _claim_columns(connection)
        sql = _claim_updates[using] = (
            f"UPDATE {table} SET {redeemed} = %s, {family_column} = %s "  # noqa: S608 - metadata
            f"WHERE {code_column} = %s AND {application} = %s AND {redeemed} IS NULL"
        )
    claimed = kept_rowcount(sql, params, db=connection, server_binding=True) == 1
    return code_row(code) if claimed else None
