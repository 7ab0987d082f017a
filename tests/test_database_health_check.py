"""The per-request database health check of config/postgresql (PostgreSQL only).

Requests go through the production WSGI application (config/wsgi.py), so `request_started`
runs Django's `close_old_connections` as under granian: the first query of each request
checks the reused connection. Between two requests, another connection kills the request
connection's backend (pg_terminate_backend), or the server ends it (idle_session_timeout), or
sends it a NOTIFY: the next request must answer 200 on a new backend, with either check.
Whether a check made a round trip is read on the server (pg_stat_activity's last statement of
the backend), never timed.
"""

from __future__ import annotations

import json
import select
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections, transaction

from config.postgresql.base import DatabaseWrapper
from config.wsgi import application
from consent.prepared import prepared_fetch
from tests.oidc.test_lean_protocol_path import Request, call

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the health check of our PostgreSQL backend"
    ),
    pytest.mark.django_db(transaction=True),  # the request connection is replaced: no test transaction
]

CHECKS = ["socket", "query"]
# (monkeypatch the wrapper itself: through the `connection` proxy, undoing deletes the attribute)


def other_connection() -> psycopg.Connection[Any]:
    """A connection of the test's own, beside Django's (the operator's psql)."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    return psycopg.connect(**params, autocommit=True)


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    with other_connection() as conn:
        yield conn


@pytest.fixture(params=CHECKS)
def check(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    connection.ensure_connection()
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS], "health_check_kind", request.param)
    assert connection.health_check_enabled, "the test settings must keep CONN_HEALTH_CHECKS on"
    return str(request.param)


@pytest.fixture
def access_token(flow: Any) -> str:
    response = flow.token(flow.get_code())
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


def backend_pid() -> int:
    assert connection.connection is not None
    return int(connection.connection.info.backend_pid)


def userinfo(token: str) -> dict[str, Any]:
    answer = call(
        application, Request("GET", "/userinfo", {"Authorization": f"Bearer {token}"}), keep_connection=False
    )
    assert answer.status.startswith("200"), answer
    return dict(json.loads(answer.body))


def wait_readable(timeout: float = 10.0) -> None:
    """Until the server's message (or end of file) has reached the request connection's socket."""
    assert connection.connection is not None
    readable, _, _ = select.select([connection.connection.fileno()], [], [], timeout)
    assert readable, "the server sent nothing to the connection"


def last_statement(admin: psycopg.Connection[Any], pid: int) -> tuple[str, str]:
    row = admin.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    assert row is not None, f"backend {pid} is gone"
    return row[0], row[1]


def start_request() -> None:
    """What `request_started` does before a request's first query (Django's signal receiver)."""
    close_old_connections()
    assert connection.connection is not None and not connection.health_check_done


def test_a_killed_backend_between_two_requests_is_replaced(check: str, access_token: str, admin: Any) -> None:
    first = userinfo(access_token)
    killed = backend_pid()
    assert admin.execute("SELECT pg_terminate_backend(%s)", [killed]).fetchone() == (True,)
    wait_readable()  # the FATAL message and end of file are there before the next request
    assert userinfo(access_token) == first  # 200, not the 503 of a dead connection
    assert backend_pid() != killed


def test_a_backend_ended_by_idle_session_timeout_is_replaced(
    check: str, access_token: str, admin: Any
) -> None:
    userinfo(access_token)
    with connection.cursor() as cursor:
        cursor.execute("SET idle_session_timeout = 50")  # milliseconds, this session only
    ended = backend_pid()
    wait_readable()
    userinfo(access_token)
    assert backend_pid() != ended


def test_a_healthy_idle_connection_is_kept(check: str, access_token: str, admin: Any) -> None:
    userinfo(access_token)
    kept = backend_pid()
    userinfo(access_token)
    assert backend_pid() == kept


def test_the_socket_check_makes_no_round_trip_and_the_query_check_one(check: str, admin: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the request''s last statement'")
    pid = backend_pid()
    start_request()
    connection.close_if_health_check_failed()
    assert connection.health_check_done and backend_pid() == pid
    expected = "SELECT 'the request''s last statement'" if check == "socket" else "SELECT 1"
    assert last_statement(admin, pid) == ("idle", expected)


def test_a_connection_with_a_pending_notification_is_replaced_by_the_socket_check(
    check: str, access_token: str, admin: Any
) -> None:
    """Anything unsolicited on an idle connection: the socket check replaces it; Django's
    `SELECT 1` keeps it (it reads the notification with its answer)."""
    userinfo(access_token)
    with connection.cursor() as cursor:
        cursor.execute("LISTEN health_check_test")
    listening = backend_pid()
    admin.execute("NOTIFY health_check_test")
    wait_readable()
    userinfo(access_token)
    if check == "socket":
        assert backend_pid() != listening
    else:
        assert backend_pid() == listening


def test_inside_a_transaction_the_check_is_the_query(admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connection.ensure_connection()
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS], "health_check_kind", "socket")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'inside the transaction'")
        pid = backend_pid()
        connection.health_check_done = False  # a check asked for inside the block
        connection.close_if_health_check_failed()
        assert connection.health_check_done and backend_pid() == pid
        assert last_statement(admin, pid) == ("idle in transaction", "SELECT 1")


def test_inside_a_transaction_a_killed_backend_fails_the_query_check(
    admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection.ensure_connection()
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS], "health_check_kind", "socket")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        killed = backend_pid()
        admin.execute("SELECT pg_terminate_backend(%s)", [killed])
        wait_readable()
        connection.health_check_done = False
        connection.close_if_health_check_failed()
        # Closed by the failed check; Django rolls the block back and forgets the connection.
        assert connection.closed_in_transaction and connection.needs_rollback
    assert connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert backend_pid() != killed


def test_a_connection_closed_on_the_client_side_is_replaced(check: str, access_token: str) -> None:
    userinfo(access_token)
    closed = backend_pid()
    assert connection.connection is not None
    connection.connection.close()  # psycopg's connection closed behind Django's back
    userinfo(access_token)
    assert connection.connection is not None and not connection.connection.closed
    assert backend_pid() != closed


def test_a_socket_that_cannot_be_polled_is_replaced(
    access_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg failing to give the socket (a connection in a state we did not foresee): the
    connection is replaced, never an error for the request."""
    userinfo(access_token)
    connection.ensure_connection()
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS], "health_check_kind", "socket")
    raw = connection.connection
    pid = backend_pid()

    def no_socket() -> int:
        raise psycopg.OperationalError("the connection is lost")

    monkeypatch.setattr(raw, "fileno", no_socket)
    userinfo(access_token)
    assert connection.connection is not raw and backend_pid() != pid


def test_the_kept_consent_cursor_follows_the_new_connection(check: str, admin: Any, settings: Any) -> None:
    """consent/prepared.py keeps one cursor (and its prepared statements) per connection: after
    a replaced connection it runs on the new one, prepared or not."""
    for prepared in (False, True):
        settings.CONSENT_PREPARED_STATEMENTS = prepared
        start_request()
        first = prepared_fetch("SELECT pg_backend_pid()", [])[0]
        admin.execute("SELECT pg_terminate_backend(%s)", [first])
        wait_readable()
        start_request()
        assert prepared_fetch("SELECT pg_backend_pid()", [])[0] == backend_pid() != first


def test_no_check_at_all_when_health_checks_are_off(
    access_token: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONN_HEALTH_CHECKS false keeps Django's meaning: no check, whatever the kind."""
    userinfo(access_token)
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS], "health_check_enabled", False)
    raw = connection.connection
    admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid()])
    wait_readable()
    start_request()
    connection.close_if_health_check_failed()
    assert connection.connection is raw  # kept: the first query would fail
    connection.close()


def test_the_backend_refuses_an_unknown_check(settings: Any) -> None:
    settings.DATABASE_HEALTH_CHECK = "ping"
    with pytest.raises(
        ImproperlyConfigured, match="DATABASE_HEALTH_CHECK must be one of socket, query, got 'ping'"
    ):
        DatabaseWrapper(connection.settings_dict)
    for kind in CHECKS:
        settings.DATABASE_HEALTH_CHECK = kind
        assert DatabaseWrapper(connection.settings_dict).health_check_kind == kind
