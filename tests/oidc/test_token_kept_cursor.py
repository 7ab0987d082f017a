"""The token endpoint's statements on the kept cursor (common/kept_cursor.py), prepared or not:
a code redemption and refreshes with rotation issue working tokens, note the client on the
browser session, and a replay still revokes the family — with nobody capturing queries, so
that the statements really run on the kept cursor (as server-bound prepared statements
with DATABASE_PREPARED_STATEMENTS on)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import connection

import common.kept_cursor
from identity.models import BrowserSession, SessionClient
from identity.oidc.models import RefreshToken
from identity.oidc.token_rows import _statements as read_statements
from identity.oidc.token_rows import refresh_token_row
from identity.oidc.token_writes import _one_statements
from identity.sessions import _statements as session_statements
from identity.sessions import session_end
from tests.oidc.conftest import complete_flow, post_token, userinfo

pytestmark = [
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
    pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "unprepared"]),
]


def _refresh(rp: Any, refresh_token: str) -> Any:
    return post_token({"grant_type": "refresh_token", "refresh_token": refresh_token}, auth=rp.basic_auth())


def _prepared_statements() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def _server_text(sql: str) -> str:
    """The statement as psycopg sends it to the server ($1, $2… for the placeholders)."""
    parts = sql.split("%s")
    return parts[0] + "".join(f"${index}{part}" for index, part in enumerate(parts[1:], start=1))


def _binding_spy(monkeypatch: Any) -> list[tuple[str, bool, type]]:
    """Each statement run through the kept cursors: its text, whether it asked for binding
    on the server, and the class of the psycopg cursor that ran it."""
    runs: list[tuple[str, bool, type]] = []
    kept = common.kept_cursor._kept

    def spy(db: Any, server_binding: bool = False) -> Any:
        cursor = kept(db, server_binding)
        runs.append((spy.sql, server_binding, type(cursor)))  # type: ignore[attr-defined]
        return cursor

    run = common.kept_cursor._run

    def run_spy(sql: str, *args: Any) -> Any:
        spy.sql = sql  # type: ignore[attr-defined]
        return run(sql, *args)

    monkeypatch.setattr(common.kept_cursor, "_kept", spy)
    monkeypatch.setattr(common.kept_cursor, "_run", run_spy)
    return runs


def test_redemption_and_refreshes_on_the_kept_cursor(
    flow: Any, settings: Any, prepared: bool, monkeypatch: Any
) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    assert not connection.queries_logged
    runs = _binding_spy(monkeypatch)
    tokens = complete_flow(flow)
    assert userinfo(tokens["access_token"]).status_code == 200
    for _ in range(3):
        response = _refresh(flow.rp, tokens["refresh_token"])
        assert response.status_code == 200, response.content
        previous, tokens = tokens, response.json()
        assert userinfo(tokens["access_token"]).status_code == 200
        assert userinfo(previous["access_token"]).status_code == 401  # rotated: deleted
    assert connection._kept_cursor[1] is prepared
    link = SessionClient.objects.get()
    assert link.last_issued_at > link.first_issued_at  # the note, on each issuance
    assert RefreshToken.objects.filter(revoked__isnull=True).count() == 1
    # Every hot statement of the path ran on the kept cursor: prepared there, or not at all.
    hot = {
        read_statements[("refresh", "default")].sql,
        read_statements[("claimed_code", "default")].sql,
        # (the write with an ID token and the session's lock and note: a redemption, then a
        # rotation; other tests of this process may have built the other variants, not run
        # here)
        _one_statements[("default", False, True, True)],
        _one_statements[("default", True, True, True)],
        # the note on its own, run once: the redemption found no link to update (then created)
        session_statements["default"][1],
    }
    found = _prepared_statements()
    assert all((_server_text(sql) in found) is prepared for sql in hot), found
    # ... and with its parameters bound on the server: prepared, or (switch off) on the
    # server-binding cursor, not the client-binding one that quotes them into the text.
    ran = {sql: (binding, cursor) for sql, binding, cursor in runs}
    assert hot <= set(ran)
    for sql in hot:
        binding, cursor = ran[sql]
        assert binding, sql
        assert issubclass(cursor, psycopg.Cursor) and not issubclass(cursor, psycopg.ClientCursor), sql
        assert issubclass(cursor, common.kept_cursor.PreparingCursor) is prepared
    # A replay of a rotated token revokes the family.
    assert _refresh(flow.rp, previous["refresh_token"]).json()["error"] == "invalid_grant"
    assert not RefreshToken.objects.filter(revoked__isnull=True).exists()
    assert userinfo(tokens["access_token"]).status_code == 401


def test_a_refresh_after_the_session_ended_is_refused(flow: Any, settings: Any, prepared: bool) -> None:
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    tokens = complete_flow(flow)
    session_end(session=BrowserSession.objects.get(), reason="logout")
    response = _refresh(flow.rp, tokens["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert not RefreshToken.objects.filter(revoked__isnull=True).exists()


def test_the_refresh_read_gives_the_same_instances_bound_either_way(
    flow: Any, settings: Any, prepared: bool, monkeypatch: Any
) -> None:
    """The refresh token's read, its parameter bound on the server, returns what the
    client-binding cursor returns: the same columns, converted the same way."""
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    tokens = complete_flow(flow)
    kept = common.kept_cursor._kept

    def read(server_binding: bool) -> list[dict[str, Any]]:
        monkeypatch.setattr(common.kept_cursor, "_kept", lambda db, _=False: kept(db, server_binding))
        found = refresh_token_row(tokens["refresh_token"])
        assert found is not None and found.session is not None
        rows = [found.row, found.row.user, found.row.access_token, found.session]
        return [{k: v for k, v in row.__dict__.items() if k != "_state"} for row in rows]

    server, client = read(True), read(False)
    assert server == client
    assert [type(value) for row in server for value in row.values()] == [
        type(value) for row in client for value in row.values()
    ]
