"""Django's PostgreSQL backend with a health check that asks the socket, not the server.

With `CONN_HEALTH_CHECKS`, Django checks a reused connection before its first query of each
request with `is_usable()`, a `SELECT 1`: one round trip per request (on userinfo, most of the
request's waiting; issue 14). Here, when the connection is open and idle (no transaction:
psycopg's `transaction_status` is IDLE), the check polls its socket with a zero timeout
instead. An idle connection is owed nothing by the server, so anything readable means the
connection is not worth keeping:

- end of file or a reset (the server process exited, crashed, or the TCP connection was
  reset: a restart, a failover, PgBouncer restarting);
- the FATAL error a backend sends as it is terminated (`pg_terminate_backend`,
  `idle_session_timeout`, a fast shutdown), followed by end of file;
- any unsolicited message (a NOTIFY, a ParameterStatus such as `in_hot_standby` on a
  promotion): rare, and replacing the connection is always correct.

The connection is then closed and Django opens a new one for the request, as after a failed
`SELECT 1`. Nothing readable: the connection is kept, with no round trip. In any other state
(inside a transaction, psycopg's status unknown, the connection already marked broken) the
check is Django's `SELECT 1`. `is_usable()` itself stays Django's query: Django also calls it
after a request whose queries raised an error (`close_if_unusable_or_obsolete`), where a
real answer from the server is worth its round trip.

What neither check sees in time: a network path that silently drops packets (a crashed host,
a partition). Nothing arrives, so the socket check keeps the connection, and the first query
waits for TCP to give up; Django's `SELECT 1` would wait just as long. TCP keepalives and
`tcp_user_timeout` (libpq parameters, in `DATABASE_URL`'s query string) bound that wait
(docs/operators.md, "Database connections").

The setting `DATABASE_HEALTH_CHECK` (config/settings.py, from the environment) chooses the
check: `socket` (the default) or `query` (Django's `SELECT 1` always). `CONN_HEALTH_CHECKS`
false still turns every check off, and a connection pool (`OPTIONS["pool"]`) still makes its
own checks, as in Django.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper
from psycopg.pq import TransactionStatus

HEALTH_CHECKS = ("socket", "query")

# Anything the kernel may report on the socket: data or end of file, urgent data, a reset or
# error, the peer hanging up.
_READABLE_OR_GONE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def socket_has_news(fileno: int) -> bool:
    """Whether the socket `fileno` has anything to report right now (never waits)."""
    poller = select.poll()
    poller.register(fileno, _READABLE_OR_GONE)
    return bool(poller.poll(0))


class DatabaseWrapper(PostgreSQLDatabaseWrapper):
    # Django's attributes that django-stubs does not declare (annotations only: no value here).
    pool: Any
    health_check_enabled: bool
    health_check_done: bool

    def __init__(self, settings_dict: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(settings_dict, *args, **kwargs)
        check = settings.DATABASE_HEALTH_CHECK
        if check not in HEALTH_CHECKS:
            raise ImproperlyConfigured(
                f"DATABASE_HEALTH_CHECK must be one of {', '.join(HEALTH_CHECKS)}, got {check!r}"
            )
        self.health_check_kind: str = check

    def close_if_health_check_failed(self) -> None:
        """Django's own (PostgreSQL's, then the base class's), with `connection_usable()` in
        place of `is_usable()`."""
        if self.pool:
            return  # The pool only returns healthy connections.
        if self.connection is None or not self.health_check_enabled or self.health_check_done:
            return
        if not self.connection_usable():
            self.close()
        self.health_check_done = True

    def connection_usable(self) -> bool:
        """The per-request check: the socket poll on an open idle connection when the
        socket check is chosen, else Django's `SELECT 1`."""
        raw = self.connection
        if (
            self.health_check_kind == "socket"
            and raw is not None
            and not raw.closed
            and raw.info.transaction_status == TransactionStatus.IDLE
        ):
            try:
                return not socket_has_news(raw.fileno())
            except (OSError, ValueError, psycopg.Error):
                return False
        return bool(self.is_usable())
