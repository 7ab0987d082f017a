"""The rows a token request writes, as plain INSERTs built once per process.

A code redemption writes the ID-token row, the access token pointing at it and the refresh
token pointing at that; a refresh with rotation first claims the presented refresh token
(a conditional UPDATE) and deletes its access token. Through the ORM each INSERT compiled
its SQL again (`Model.save`: the compiler cost more CPU than the database), and each row
was one round trip.

Here the statements are built once per process and connection alias from the models'
metadata (table and column names quoted by the connection, values always parameters), and
each value is prepared exactly as `Model.save(force_insert=True)` prepares it: every local
concrete field but the auto primary key, `field.pre_save(instance, add=True)` (the
`auto_now` timestamps, the refresh and access tokens' checksum) then
`field.get_db_prep_save`. No model here has a pre_save/post_save receiver (a test checks
it), so no signal is skipped. The instances end as `save()` leaves them: primary key set,
`_state.adding` False, `_state.db` the alias.

On PostgreSQL the whole write is ONE statement: data-modifying CTEs chain the claim, the
DELETE of the old access token and the three INSERTs, each INSERT selecting from the step
before it, so that nothing is inserted when the claim finds the token already revoked
(a concurrent rotation or a replay: the caller revokes the family) and the references
(`id_token_id`, `access_token_id`) are the ids just returned. The claim is the same
conditional UPDATE as `RefreshToken.revoke` (`revoked IS NULL`): under READ COMMITTED a
concurrent claim makes it wait and then match no row. When the tokens carry a browser
session, the same statement then locks the session row and notes the client on it
(identity.sessions.session_client_steps: what session_client_record's two statements did,
in the same order, in the same transaction), so that a refresh or a code redemption writes
in one round trip instead of three. Elsewhere (SQLite) the same writes run as separate
statements: `RefreshToken.revoke`, then the three INSERTs, and the caller notes the session.

The caller holds the transaction (identity/oidc/request_validator.py, save_bearer_token).
The code's claim at redemption (`claim_code`) is likewise one UPDATE written once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.models import Field, Model
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_id_token_model, get_refresh_token_model

from common.kept_cursor import kept_fetch, kept_rowcount
from identity.sessions import session_client_params, session_client_steps


@dataclass(frozen=True)
class _Insert:
    """One model's INSERT: the fields written, in the order of `columns`."""

    model: type[Model]
    table: str
    columns: str
    fields: tuple[Field, ...]
    pk_column: str


_inserts: dict[tuple[str, str], _Insert] = {}


def _insert_for(model: type[Model], using: str) -> _Insert:
    key = (model._meta.label, using)
    cached = _inserts.get(key)
    if cached is None:
        quote = connections[using].ops.quote_name
        meta = model._meta
        # What Model._save_table inserts for a new row with no primary key set.
        fields = tuple(
            field
            for field in meta.local_concrete_fields
            if field is not meta.auto_field and not field.generated
        )
        cached = _inserts[key] = _Insert(
            model=model,
            table=quote(meta.db_table),
            columns=", ".join(quote(field.column) for field in fields),
            fields=fields,
            pk_column=quote(meta.pk.column),
        )
    return cached


def _values(insert: _Insert, instance: Model, connection: Any) -> list[Any]:
    """What SQLInsertCompiler sends for `instance` (force_insert, not raw)."""
    return [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in insert.fields]


def _saved(instance: Model, pk: Any, using: str) -> None:
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = using


def insert_row(instance: Model, using: str | None = None) -> Model:
    """`instance.save(force_insert=True)` as one plain INSERT (no signal receivers: see above)."""
    using = using or router.db_for_write(type(instance))
    connection = connections[using]
    insert = _insert_for(type(instance), using)
    marks = ", ".join(["%s"] * len(insert.fields))
    sql = f"INSERT INTO {insert.table} ({insert.columns}) VALUES ({marks})"  # noqa: S608 - metadata
    values = _values(insert, instance, connection)
    if connection.vendor == "postgresql":
        # On the connection's kept cursor (common/kept_cursor.py), prepared where allowed.
        # Parameters bound on the server (typed by the columns they are inserted into).
        pk = kept_fetch(f"{sql} RETURNING {insert.pk_column}", values, db=connection, server_binding=True)[0]
    else:
        returning = connection.features.can_return_columns_from_insert
        if returning:
            sql += f" RETURNING {insert.pk_column}"
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            pk = cursor.fetchone()[0] if returning else cursor.lastrowid
    _saved(instance, pk, using)
    return instance


@dataclass
class IssuedRows:
    """The rows of one token response, not yet saved. `previous` is the refresh token
    presented (a rotation), claimed before anything is written; None for a code.

    `session_sid` (with `session_client`): the browser session to note the client on
    (identity.sessions.session_client_record). On PostgreSQL the write statement does the
    session's lock and note too and leaves their outcome in `session_found` for
    identity.sessions.session_client_settle; elsewhere `session_found` stays None and the
    caller calls session_client_record."""

    access_token: Any
    refresh_token: Any
    id_token: Any | None = None
    previous: Any | None = None
    session_sid: str = ""
    session_client: Any = None
    session_found: tuple[Any, Any, bool] | None = None


def write_tokens(rows: IssuedRows) -> bool:
    """Claim `rows.previous` (if any), then INSERT the ID token, the access token and the
    refresh token, linked. False, with nothing written, if the claim found the presented
    refresh token already revoked. In the caller's transaction."""
    using = router.db_for_write(get_access_token_model())
    if connections[using].vendor == "postgresql":
        return _write_in_one_statement(rows, using)
    if rows.previous is not None and not rows.previous.revoke():
        return False
    if rows.id_token is not None:
        insert_row(rows.id_token, using)
        rows.access_token.id_token = rows.id_token
    insert_row(rows.access_token, using)
    rows.refresh_token.access_token = rows.access_token
    insert_row(rows.refresh_token, using)
    return True


# --- PostgreSQL: one statement ------------------------------------------------------------


_one_statements: dict[tuple[str, bool, bool, bool], str] = {}


def _select_list(insert: _Insert, linked: dict[str, str]) -> str:
    """The INSERT ... SELECT list: a parameter per field, or the id of a row inserted by an
    earlier step of the statement for the field named in `linked`."""
    return ", ".join(linked.get(field.attname, "%s") for field in insert.fields)


def _one_statement(using: str, *, claim: bool, id_token: bool, session: bool = False) -> str:
    key = (using, claim, id_token, session)
    sql = _one_statements.get(key)
    if sql is not None:
        return sql
    quote = connections[using].ops.quote_name
    refresh_model, access_model = get_refresh_token_model(), get_access_token_model()
    refresh, access = _insert_for(refresh_model, using), _insert_for(access_model, using)
    steps = []
    source = ""  # what the first INSERT selects from: the claim, or nothing
    if claim:
        revoked = quote(refresh_model._meta.get_field("revoked").column)
        updated = quote(refresh_model._meta.get_field("updated").column)
        access_id = quote(refresh_model._meta.get_field("access_token").column)
        steps.append(
            f"claimed AS (UPDATE {refresh.table} SET {revoked} = %s, {updated} = %s, {access_id} = NULL "  # noqa: S608
            f"WHERE {refresh.pk_column} = %s AND {revoked} IS NULL RETURNING {refresh.pk_column})"
        )
        # The presented token's access token, deleted only if the claim succeeded.
        steps.append(
            f"deleted AS (DELETE FROM {access.table} WHERE {access.pk_column} = %s "  # noqa: S608
            "AND EXISTS (SELECT 1 FROM claimed))"
        )
        source = " FROM claimed"
    access_links = {}
    if id_token:
        id_insert = _insert_for(get_id_token_model(), using)
        steps.append(
            f"i AS (INSERT INTO {id_insert.table} ({id_insert.columns}) "
            f"SELECT {_select_list(id_insert, {})}{source} RETURNING {id_insert.pk_column})"
        )
        access_links["id_token_id"] = f"i.{id_insert.pk_column}"
        source = " FROM i"
    steps.append(
        f"a AS (INSERT INTO {access.table} ({access.columns}) "
        f"SELECT {_select_list(access, access_links)}{source} RETURNING {access.pk_column})"
    )
    steps.append(
        f"r AS (INSERT INTO {refresh.table} ({refresh.columns}) "  # noqa: S608
        f"SELECT {_select_list(refresh, {'access_token_id': f'a.{access.pk_column}'})} FROM a "
        f"RETURNING {refresh.pk_column})"
    )
    ids = f"a.{access.pk_column}, r.{refresh.pk_column}"
    tables = "a, r"
    if id_token:
        ids, tables = f"{ids}, i.{id_insert.pk_column}", f"{tables}, i"
    else:
        ids = f"{ids}, NULL"
    if session:
        # The browser session's lock and note (identity.sessions.session_client_record),
        # once the refresh token is inserted: after the claim, as when they were statements
        # of their own in the same transaction (the same lock order), and not at all when the
        # claim fails. The lock is held until the caller's transaction commits.
        session_steps, session_columns = session_client_steps(using, "r")
        steps.append(session_steps)
        ids = f"{ids}, {session_columns}"
    sql = f"WITH {', '.join(steps)} SELECT {ids} FROM {tables}"  # noqa: S608 - identifiers from metadata
    _one_statements[key] = sql
    return sql


def _without(values: list[Any], insert: _Insert, linked: Sequence[str]) -> list[Any]:
    return [value for field, value in zip(insert.fields, values, strict=True) if field.attname not in linked]


def _write_in_one_statement(rows: IssuedRows, using: str) -> bool:
    connection = connections[using]
    previous = rows.previous
    params: list[Any] = []
    now = None
    if previous is not None:
        now = timezone.now()
        revoked_field = type(previous)._meta.get_field("revoked")
        stamp = revoked_field.get_db_prep_save(now, connection)
        params += [stamp, stamp, previous.pk, previous.access_token_id]
    if rows.id_token is not None:
        id_insert = _insert_for(type(rows.id_token), using)
        params += _values(id_insert, rows.id_token, connection)
        rows.access_token.id_token_id = None  # set by the statement (i.id)
    access = _insert_for(type(rows.access_token), using)
    linked_access = ("id_token_id",) if rows.id_token is not None else ()
    params += _without(_values(access, rows.access_token, connection), access, linked_access)
    refresh = _insert_for(type(rows.refresh_token), using)
    params += _without(_values(refresh, rows.refresh_token, connection), refresh, ("access_token_id",))
    session = bool(rows.session_sid)
    if session:
        params += session_client_params(sid=rows.session_sid, client=rows.session_client, using=using)
    sql = _one_statement(
        using, claim=previous is not None, id_token=rows.id_token is not None, session=session
    )
    # The kept cursor (common/kept_cursor.py), the parameters bound on the server.
    row = kept_fetch(sql, params, db=connection, server_binding=True)
    if row is None:  # the claim matched no row: nothing was inserted
        return False
    if previous is not None:
        previous.revoked, previous.updated, previous.access_token_id = now, now, None
    if rows.id_token is not None:
        _saved(rows.id_token, row[2], using)
        rows.access_token.id_token = rows.id_token
    _saved(rows.access_token, row[0], using)
    rows.refresh_token.access_token = rows.access_token
    _saved(rows.refresh_token, row[1], using)
    if session:
        rows.session_found = (row[3], row[4], row[5])
    return True


# --- the code's claim -----------------------------------------------------------------------


_claim_statements: dict[tuple[str, str], tuple[str, Any, Any]] = {}


def claim_code(grant: Model, family: Any) -> bool:
    """Mark the authorization code redeemed, recording the token family its redemption will
    issue, if no one did first: the ORM's `filter(pk=…, redeemed_at__isnull=True).update(
    redeemed_at=now, token_family=family)`, as one plain UPDATE written once per process.
    True if this call claimed it (identity/oidc/request_validator.py, validate_code)."""
    model = type(grant)
    using = router.db_for_write(model)
    connection = connections[using]
    key = (model._meta.label, using)
    cached = _claim_statements.get(key)
    if cached is None:
        quote = connection.ops.quote_name
        redeemed: Any = model._meta.get_field("redeemed_at")
        family_field: Any = model._meta.get_field("token_family")
        sql = (
            f"UPDATE {quote(model._meta.db_table)} SET {quote(redeemed.column)} = %s, "  # noqa: S608
            f"{quote(family_field.column)} = %s "
            f"WHERE {quote(model._meta.pk.column)} = %s AND {quote(redeemed.column)} IS NULL"
        )
        cached = _claim_statements[key] = (sql, redeemed, family_field)
    sql, redeemed, family_field = cached
    params = [
        redeemed.get_db_prep_save(timezone.now(), connection),
        family_field.get_db_prep_save(family, connection),
        grant.pk,
    ]
    return kept_rowcount(sql, params, db=connection, server_binding=True) == 1
