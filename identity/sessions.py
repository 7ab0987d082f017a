"""Browser sessions as records: opening, ending, "sign out everywhere", revoking one.

A `BrowserSession` is the OP session of OpenID Connect: its `sid` goes into the ID tokens
issued from it, and onto the authorization codes, access and refresh tokens, so that
ending the session can act on exactly what it produced.

What ending a session does (one transaction, `session_end`):

- the record is marked ended (with a reason) and the Django session behind it deleted,
  so the browser is signed out wherever it is;
- an audit event is written;
- the session-ended listeners run inside the same transaction, in the order registered.
  The OIDC layer registers two (IdentityConfig.ready()): identity/oidc/session_tokens.py
  revokes the access tokens, ID token records and refresh tokens issued in that session
  (and only those), then identity/oidc/backchannel.py puts a back-channel logout
  notification for every partner of the session in the outbox. A registry keeps this
  module free of imports from the OIDC layer, its token models and the connectors
  (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import logout as django_logout
from django.db import connections, router, transaction
from django.http import HttpRequest
from django.utils import timezone

from common.crypto import decrypt_at_rest, encrypt_at_rest
from common.kept_cursor import kept_fetch, kept_rowcount
from common.ratelimit import client_ip
from identity.audit import audit_log
from identity.email_backend import user_already_read
from identity.levels import ACR_BASIC, ACR_MFA
from identity.models import BrowserSession, SessionClient, User

log = logging.getLogger(__name__)

SESSION_SID = "sessions.sid"
# When and how the resident authenticated, written by identity.signin.session_login.
SESSION_AUTH_TIME = "sessions.auth_time"
SESSION_AMR = "sessions.amr"
LAST_SEEN_THROTTLE = timedelta(seconds=60)
USER_AGENT_MAX = 200


class EndReason:
    LOGOUT = "logout"
    RP_LOGOUT = "rp_initiated_logout"
    SIGN_OUT_EVERYWHERE = "sign_out_everywhere"
    REVOKED = "revoked"
    REPLACED = "replaced"


@dataclass
class SessionEnded:
    """What `session_end` did: the partners of the session (front-channel logout needs them)."""

    session: BrowserSession
    clients: list[Any] = field(default_factory=list)
    already_ended: bool = False


SessionEndedListener = Callable[[BrowserSession, list[Any]], None]
_ended_listeners: list[SessionEndedListener] = []


def register_session_ended_listener(listener: SessionEndedListener) -> None:
    """Called from AppConfig.ready(); each listener runs inside session_end's transaction."""
    if listener not in _ended_listeners:
        _ended_listeners.append(listener)


# --- small helpers ----------------------------------------------------------------------------


def acr_for(amr: list[str]) -> str:
    """The authentication level a set of methods (RFC 8176) reaches.

    Same rule as identity.mfa.selectors.session_acr: MFA only when the sign-in flows wrote
    "mfa" (password + second factor, or a user-verified passkey). A passkey used with user
    presence only (["hwk"]/["swk"]) is one factor, hence the basic level.
    """
    return ACR_MFA if "mfa" in (amr or []) else ACR_BASIC


_BROWSERS = (
    ("Edge", re.compile(r"Edg(e|A|iOS)?/")),
    ("Opera", re.compile(r"OPR/|Opera")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/")),
    ("Firefox", re.compile(r"Firefox/|FxiOS/")),
    ("Chrome", re.compile(r"Chrome/|CriOS/")),
    ("Safari", re.compile(r"Safari/")),
)
_SYSTEMS = (
    ("iPhone", re.compile(r"iPhone")),
    ("iPad", re.compile(r"iPad")),
    ("Android", re.compile(r"Android")),
    ("Windows", re.compile(r"Windows")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("Linux", re.compile(r"Linux")),
)


def device_label(user_agent: str) -> str:
    """A coarse, human label ("Firefox · Windows"): enough to recognise a device, no more."""
    browser = next((name for name, pattern in _BROWSERS if pattern.search(user_agent or "")), "")
    system = next((name for name, pattern in _SYSTEMS if pattern.search(user_agent or "")), "")
    return " · ".join(part for part in (browser, system) if part) or "?"


def _session_store() -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore


def _encrypt_session_key(sid: str, session_key: str | None) -> bytes | None:
    if not session_key:
        return None
    return encrypt_at_rest(session_key.encode(), context=b"session:" + sid.encode())


def _decrypt_session_key(record: BrowserSession) -> str | None:
    blob = record.session_key_encrypted
    if not blob:
        return None
    try:
        return decrypt_at_rest(bytes(blob), context=b"session:" + record.sid.encode()).decode()
    except Exception:  # a key-encryption-key change: the binding is simply lost
        log.warning("browser session %s: session key not readable", record.pk)
        return None


def _as_datetime(timestamp: int | float | None) -> datetime:
    if timestamp is None:
        return timezone.now()
    return datetime.fromtimestamp(int(timestamp), tz=UTC)


# --- opening and reading ------------------------------------------------------------------------


# Its callers already hold a transaction (session_login, the adoption below) and let any
# error through: no savepoint of its own (two statements fewer per sign-in).
@transaction.atomic(savepoint=False)
def browser_session_open(
    *,
    request: HttpRequest,
    user: User,
    amr: list[str],
    auth_time: int | float | None = None,
    previous_sid: str | None = None,
) -> BrowserSession:
    """Record the sign-in that just happened on this browser (called by `session_login`).

    A new sign-in of the same resident on the same browser (prompt=login, max_age, step-up)
    keeps the session and its sid, with the new authentication time and methods. A sign-in
    of another resident ends the previous resident's session first.
    """
    now = timezone.now()
    when = _as_datetime(auth_time) if auth_time is not None else now
    user_agent = (request.META.get("HTTP_USER_AGENT") or "")[:USER_AGENT_MAX]
    if previous_sid:
        previous = BrowserSession.objects.select_for_update().filter(sid=previous_sid).first()
        if previous is not None and previous.ended_at is None:
            if previous.user_id == user.pk:
                previous.auth_time = when
                previous.amr = list(amr)
                previous.acr = acr_for(amr)
                previous.last_seen_at = now
                previous.user_agent = user_agent
                previous.device = device_label(user_agent)
                previous.session_key_encrypted = _encrypt_session_key(
                    previous.sid, request.session.session_key
                )
                previous.save(
                    update_fields=[
                        "auth_time",
                        "amr",
                        "acr",
                        "last_seen_at",
                        "user_agent",
                        "device",
                        "session_key_encrypted",
                    ]
                )
                request.session[SESSION_SID] = previous.sid
                return previous
            session_end(session=previous, reason=EndReason.REPLACED, delete_django_session=False)
    sid = secrets.token_urlsafe(32)
    record = BrowserSession.objects.create(
        sid=sid,
        user=user,
        auth_time=when,
        amr=list(amr),
        acr=acr_for(amr),
        user_agent=user_agent,
        device=device_label(user_agent),
        last_seen_at=now,
        session_key_encrypted=_encrypt_session_key(sid, request.session.session_key),
    )
    request.session[SESSION_SID] = sid
    return record


# --- the middleware's check: the session record and the resident in one statement ----------

_SESSION_WITH_USER: dict[tuple[str, bool], tuple[str, tuple[Any, ...], int, tuple[int, ...]]] = {}
_SESSION_ATTNAMES: list[str] = []
_USER_ATTNAMES: list[str] = []
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_micros(column: str) -> str:
    """A timestamptz column as whole microseconds since 1970 (bigint; NULL stays NULL), as
    identity/oidc/access_tokens.py reads the resident's: extract() gives an exact numeric
    (PostgreSQL 14+), and PostgreSQL keeps microseconds, so the cast does not round."""
    return f"(extract(epoch from {column}) * 1000000)::bigint"


def _from_epoch_micros(value: int | None) -> datetime | None:
    """What Django's timestamptz loader gives for that column when the connection is in UTC."""
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _epochs_wanted(connection: Any) -> bool:
    """Date-times read as epochs: PostgreSQL, where Django's loader gives UTC datetimes (USE_TZ,
    the connection's TIME_ZONE unset: the production settings)."""
    return connection.vendor == "postgresql" and connection.timezone is UTC


def _session_with_user_sql(using: str) -> tuple[str, tuple[Any, ...], int, tuple[int, ...]]:
    """SELECT every column of the session record and of its resident, joined, by `sid`: the
    statement written once per process and database from the models' metadata, with the
    database converters of the columns that have any (index, converters, column), and the
    indexes of the date-time columns selected as microseconds since 1970 (`_epoch_micros`:
    psycopg's C integer loader instead of Django's timestamptz loader, a Python subclass of
    psycopg's Python one; seven such columns per row)."""
    connection = connections[using]
    epochs_wanted = _epochs_wanted(connection)
    cached = _SESSION_WITH_USER.get((using, epochs_wanted))
    if cached is None:
        quote = connection.ops.quote_name
        session_fields = BrowserSession._meta.concrete_fields
        user_fields = User._meta.concrete_fields
        columns: list[str] = []
        converters: list[tuple[int, tuple[Any, ...], Any]] = []
        epochs: list[int] = []
        for model, alias in ((BrowserSession, "s"), (User, "u")):
            for model_field in model._meta.concrete_fields:
                column: Any = model_field.get_col(alias)
                found = connection.ops.get_db_converters(column) + column.field.get_db_converters(connection)
                expression = f"{alias}.{quote(model_field.column)}"
                if found:
                    converters.append((len(columns), tuple(found), column))
                elif epochs_wanted and model_field.get_internal_type() == "DateTimeField":
                    epochs.append(len(columns))
                    expression = _epoch_micros(expression)
                columns.append(expression)
        sql = (
            f"SELECT {', '.join(columns)} FROM {quote(BrowserSession._meta.db_table)} s "  # noqa: S608 - metadata
            f"INNER JOIN {quote(User._meta.db_table)} u "
            f"ON u.{quote(User._meta.pk.column)} = s.{quote(BrowserSession._meta.get_field('user').column)} "
            f"WHERE s.{quote(BrowserSession._meta.get_field('sid').column)} = %s LIMIT 1"
        )
        _SESSION_ATTNAMES[:] = [f.attname for f in session_fields]
        _USER_ATTNAMES[:] = [f.attname for f in user_fields]
        cached = _SESSION_WITH_USER[(using, epochs_wanted)] = (
            sql,
            tuple(converters),
            len(session_fields),
            tuple(epochs),
        )
    return cached


def browser_session_with_user(sid: str) -> tuple[BrowserSession, User] | None:
    """The session record named `sid` and its resident, read in one statement, as the ORM
    makes them (`BrowserSession.objects.filter(sid=sid).first()` and
    `User.objects.get(pk=record.user_id)`: every column, each database converter applied,
    `Model.from_db`); None when no record has that sid.

    On the connection's kept cursor (common/kept_cursor.py: no Django cursor and wrapper
    built per call, prepared where DATABASE_PREPARED_STATEMENTS allows), as the token
    path's reads."""
    using = router.db_for_read(BrowserSession)
    sql, converters, split, epochs = _session_with_user_sql(using)
    connection = connections[using]
    row = kept_fetch(sql, [sid], db=connection)
    if row is None:
        return None
    values = list(row)
    for index in epochs:
        values[index] = _from_epoch_micros(values[index])
    for index, found, column in converters:
        for converter in found:
            values[index] = converter(values[index], column, connection)
    record = BrowserSession.from_db(using, _SESSION_ATTNAMES, values[:split])
    user = User.from_db(using, _USER_ATTNAMES, values[split:])
    return record, user


def browser_session_check(request: HttpRequest) -> None:
    """BrowserSessionMiddleware's check of a signed-in request whose Django session names a
    session record: signs the browser out when the record has ended (or is another
    resident's), as `browser_session_for_request(request, adopt=False)` does.

    The record and its resident are read in one statement before `request.user` is
    evaluated; Django's `auth.get_user` then runs as always (the backend, whether the
    account may sign in, the session hash and its fallback secrets), the backend answering
    from the row read (`identity.email_backend.user_already_read`) when the session names
    that resident. Nothing else changes: an unknown sid, or a session naming another
    resident than the record's, goes through the usual reads and checks.
    """
    sid = str(request.session.get(SESSION_SID) or "")
    found = browser_session_with_user(sid) if sid else None
    if found is None:
        browser_session_for_request(request, adopt=False, _read=(sid, None) if sid else None)
        return
    # request.user (AuthenticationMiddleware's lazy object) is evaluated in there, first.
    with user_already_read(found[1]):
        browser_session_for_request(request, adopt=False, _read=(sid, found[0]))


def browser_session_for_request(
    request: HttpRequest,
    *,
    adopt: bool = True,
    _read: tuple[str, BrowserSession | None] | None = None,
) -> BrowserSession | None:
    """The live session record of this browser, or None (and the browser signed out).

    A signed-in Django session without a record (signed in before records existed, or by
    a test/admin login) is adopted: a record is created for it. A Django session whose
    record has ended (revoked from another device) is flushed here. `last_seen_at` is
    updated at most once a minute.
    """
    cached = getattr(request, "_cum_browser_session", None)
    if cached is not None and cached.sid == request.session.get(SESSION_SID):
        return cached
    record = _browser_session_for_request(request, adopt=adopt, read=_read)
    # A per-request memo on Django's request, which declares no such attribute.
    request._cum_browser_session = record  # type: ignore[attr-defined]
    return record


def _browser_session_for_request(
    request: HttpRequest, *, adopt: bool, read: tuple[str, BrowserSession | None] | None = None
) -> BrowserSession | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    sid = request.session.get(SESSION_SID)
    if read is not None and sid and read[0] == sid:
        record = read[1]  # read with the resident (browser_session_check)
    else:
        record = BrowserSession.objects.filter(sid=sid).first() if sid else None
    if record is not None and (record.ended_at is not None or record.user_id != user.pk):
        django_logout(request)
        return None
    if record is None:
        if not adopt:
            return None
        auth_time = request.session.get(SESSION_AUTH_TIME)
        if auth_time is None and user.last_login:
            auth_time = user.last_login.timestamp()
        with transaction.atomic():
            record = browser_session_open(
                request=request,
                user=user,
                amr=list(request.session.get(SESSION_AMR) or []),
                auth_time=auth_time,
            )
        return record
    now = timezone.now()
    if now - record.last_seen_at >= LAST_SEEN_THROTTLE:
        fields: dict[str, Any] = {"last_seen_at": now}
        session_key = request.session.session_key
        if session_key and _decrypt_session_key(record) != session_key:
            # The Django session key was cycled (e.g. password change): keep the binding.
            fields["session_key_encrypted"] = _encrypt_session_key(record.sid, session_key)
        BrowserSession.objects.filter(pk=record.pk, ended_at__isnull=True).update(**fields)
        record.last_seen_at = now
    return record


def browser_session_by_sid(sid: str | None) -> BrowserSession | None:
    if not sid:
        return None
    return BrowserSession.objects.filter(sid=sid).first()


_statements: dict[str, tuple[str, str]] = {}


def _session_client_statements(using: str) -> tuple[str, str]:
    """session_client_record's SQL for this database: lock the session by its sid (FOR
    UPDATE where the database has it; SQLite locks the whole database on write anyway),
    then note the client. Identifiers from the models' metadata, values as parameters."""
    cached = _statements.get(using)
    if cached is None:
        connection = connections[using]
        quote = connection.ops.quote_name
        session, link = BrowserSession._meta, SessionClient._meta
        lock = (
            f"SELECT {quote(session.pk.column)}, {quote(session.get_field('ended_at').column)} "  # noqa: S608
            f"FROM {quote(session.db_table)} WHERE {quote(session.get_field('sid').column)} = %s LIMIT 1"
        )
        if connection.features.has_select_for_update:
            lock += " FOR UPDATE"
        session_id, client_id = link.get_field("session").column, link.get_field("client").column
        touch = (
            f"UPDATE {quote(link.db_table)} SET {quote(link.get_field('last_issued_at').column)} = %s "  # noqa: S608
            f"WHERE {quote(session_id)} = %s AND {quote(client_id)} = %s"
        )
        cached = _statements[using] = (lock, touch)
    return cached


@transaction.atomic(savepoint=False)
def session_client_record(*, sid: str, client: Any) -> bool:
    """Note that `client` received tokens in session `sid`. False if the session has ended.

    Locks the session row, so a sign-out running at the same moment either sees this
    client (and notifies it) or has already ended the session (and the caller revokes
    what it just issued).

    Called inside the token endpoint's transaction, on every token issued: no savepoint
    of its own (an error here fails the whole issuance anyway), only the two columns it
    needs of the locked row, and the two statements written once per process
    (_session_client_statements) instead of compiled by the ORM on every call, run on the
    connection's kept cursor (common/kept_cursor.py: no Django cursor built per statement,
    prepared where DATABASE_PREPARED_STATEMENTS allows). The token endpoint's code and
    refresh grants do the same lock and note inside their write statement on PostgreSQL
    (session_client_steps, session_client_settle).
    """
    using = router.db_for_write(SessionClient)
    connection = connections[using]
    lock_sql, touch_sql = _session_client_statements(using)
    row = kept_fetch(lock_sql, [sid], db=connection, server_binding=True)
    if row is None:
        return True  # no record to attach to (e.g. a session-less token): nothing to do
    session_pk, ended_at = row
    if ended_at is not None:
        return False
    _note_client(connection, touch_sql, session_pk, client)
    return True


def _note_client(connection: Any, touch_sql: str, session_pk: Any, client: Any) -> None:
    """The link's last issuance moved to now, or the link created (the session locked)."""
    now = timezone.now()
    params = [connection.ops.adapt_datetimefield_value(now), session_pk, client.pk]
    if not kept_rowcount(touch_sql, params, db=connection, server_binding=True):
        SessionClient.objects.create(
            session_id=session_pk, client=client, first_issued_at=now, last_issued_at=now
        )


_steps: dict[str, tuple[str, str]] = {}


def session_client_steps(using: str, after: str) -> tuple[str, str]:
    """session_client_record's lock and note as two steps of a larger PostgreSQL statement
    (identity/oidc/token_writes.py), run only once the step named `after` returned a row:
    `(steps, columns)`. The steps are WITH items (the session row locked FOR UPDATE by its
    sid, `cum_s`; the link's last issuance moved to the parameter's time, `cum_n`), taking
    the parameters of session_client_params in that order; the columns, for the statement's
    final SELECT list, give the locked session's id, its ended_at and whether the link was
    noted, for session_client_settle."""
    cached = _steps.get(using)
    if cached is None:
        quote = connections[using].ops.quote_name
        session, link = BrowserSession._meta, SessionClient._meta
        pk, ended = quote(session.pk.column), quote(session.get_field("ended_at").column)
        lock = (
            f"cum_s AS MATERIALIZED (SELECT {pk}, {ended} FROM {quote(session.db_table)} "  # noqa: S608
            f"WHERE {quote(session.get_field('sid').column)} = %s AND EXISTS (SELECT 1 FROM {after}) "
            "LIMIT 1 FOR UPDATE)"
        )
        touch = (
            f"cum_n AS (UPDATE {quote(link.db_table)} "  # noqa: S608
            f"SET {quote(link.get_field('last_issued_at').column)} = %s "
            f"WHERE {quote(link.get_field('session').column)} = "
            f"(SELECT {pk} FROM cum_s WHERE {ended} IS NULL) "
            f"AND {quote(link.get_field('client').column)} = %s RETURNING 1)"
        )
        columns = f"(SELECT {pk} FROM cum_s), (SELECT {ended} FROM cum_s), EXISTS (SELECT 1 FROM cum_n)"  # noqa: S608
        cached = _steps[using] = (f"{lock}, {touch}", columns)
    return cached


def session_client_params(*, sid: str, client: Any, using: str) -> list[Any]:
    """The parameters of session_client_steps' steps."""
    return [sid, connections[using].ops.adapt_datetimefield_value(timezone.now()), client.pk]


def session_client_settle(*, found: tuple[Any, Any, bool], client: Any, using: str) -> bool:
    """session_client_record's answer from the columns of session_client_steps (in the
    transaction of the statement that ran them, the session row still locked): True if
    there was no session or the client is noted on it, False if the session has ended.

    A link the statement did not update is noted again in a statement of its own, as
    session_client_record does: either there is none yet (it is created), or another
    transaction created it and committed while this statement waited for the session's
    lock, after this statement's snapshot was taken (a new statement sees it)."""
    session_pk, ended_at, noted = found
    if session_pk is None:
        return True
    if ended_at is not None:
        return False
    if not noted:
        connection = connections[using]
        _note_client(connection, _session_client_statements(using)[1], session_pk, client)
    return True


# --- ending sessions ---------------------------------------------------------------------------


@transaction.atomic
def session_end(
    *,
    session: BrowserSession,
    reason: str,
    acting_user: User | None = None,
    ip: str = "",
    delete_django_session: bool = True,
) -> SessionEnded:
    """End one browser session: its listeners run (tokens revoked, partners notified), the browser
    is signed out.

    Idempotent: ending an ended session does nothing (and notifies nobody again).
    """
    locked = BrowserSession.objects.select_for_update().select_related("user").get(pk=session.pk)
    if locked.ended_at is not None:
        return SessionEnded(session=locked, already_ended=True)
    locked.ended_at = timezone.now()
    locked.end_reason = reason[:32]
    locked.save(update_fields=["ended_at", "end_reason"])
    clients = [link.client for link in locked.session_clients.select_related("client").order_by("pk")]
    audit_log(
        event="session.ended",
        acting_user=acting_user,
        subject_user=locked.user,
        ip=ip,
        data={"session": locked.pk, "reason": reason, "clients": [client.client_id for client in clients]},
    )
    for listener in _ended_listeners:
        listener(locked, clients)
    if delete_django_session:
        session_key = _decrypt_session_key(locked)
        if session_key:
            _session_store()().delete(session_key)
    session.ended_at, session.end_reason = locked.ended_at, locked.end_reason
    return SessionEnded(session=locked, clients=clients)


@transaction.atomic
def sessions_end_all(
    *,
    user: User,
    except_current: BrowserSession | str | None = None,
    reason: str = EndReason.SIGN_OUT_EVERYWHERE,
    acting_user: User | None = None,
    ip: str = "",
) -> int:
    """ "Sign out everywhere": end every live session of the resident (but `except_current`)."""
    keep = except_current.sid if isinstance(except_current, BrowserSession) else except_current
    sessions = BrowserSession.objects.filter(user=user, ended_at__isnull=True)
    if keep:
        sessions = sessions.exclude(sid=keep)
    ended = 0
    for record in list(sessions.order_by("pk")):
        if not session_end(
            session=record, reason=reason, acting_user=acting_user or user, ip=ip
        ).already_ended:
            ended += 1
    audit_log(
        event="session.ended_all",
        acting_user=acting_user or user,
        subject_user=user,
        ip=ip,
        data={"count": ended, "kept_current": bool(keep)},
    )
    return ended


@transaction.atomic
def session_revoke(*, user: User, sid: str, acting_user: User | None = None, ip: str = "") -> bool:
    """End one of the resident's sessions from the account pages. False if no such live session."""
    record = BrowserSession.objects.filter(user=user, sid=sid, ended_at__isnull=True).first()
    if record is None:
        return False
    return not session_end(
        session=record, reason=EndReason.REVOKED, acting_user=acting_user or user, ip=ip
    ).already_ended


def sessions_active(*, user: User) -> list[BrowserSession]:
    """The resident's live sessions, most recently seen first (for the account pages)."""
    return list(
        BrowserSession.objects.filter(user=user, ended_at__isnull=True)
        .prefetch_related("session_clients__client")
        .order_by("-last_seen_at")
    )


# --- signal receiver: a receiver only calls a service (docs/architecture.md) -------------------


def on_user_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """django.contrib.auth.logout() ends the session record of that browser."""
    if request is None or not hasattr(request, "session"):
        return
    record = browser_session_by_sid(request.session.get(SESSION_SID))
    if record is None or record.ended_at is not None:
        return
    if getattr(user, "is_authenticated", False) and record.user_id != user.pk:
        # A session naming another resident's record (its data altered on the server): this
        # sign-out ends this browser's Django session, never that resident's record.
        return

    session_end(
        session=record,
        reason=EndReason.LOGOUT,
        acting_user=user if getattr(user, "is_authenticated", False) else None,
        ip=client_ip(request),
        delete_django_session=False,
    )
