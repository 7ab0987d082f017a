"""Sign-in and sign-out writes: the browser session opened, the attempts and locks recorded,
the new-device email. Keyword-only; audit rows carry no personal data (identity.audit).

The throttle that decides whether an attempt may proceed is identity.ratelimit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import login as django_login
from django.contrib.auth import logout as django_logout
from django.db import connections, router, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from identity.audit import audit_log
from identity.emails import absolute_url, send_email
from identity.mfa.flow import pending_clear
from identity.mfa.selectors import second_factor_exists, user_has_mfa
from identity.models import User, normalize_email
from identity.not_me import not_me_days, not_me_url
from identity.reauth import SIGN_IN_STAFF_GROUP, staff_group_exists, staff_sign_in_audit
from identity.sessions import SESSION_AMR, SESSION_AUTH_TIME, SESSION_SID, browser_session_open

SIGN_IN_HAS_MFA = "sign_in_has_mfa"


def _sign_in_read(email: str) -> QuerySet[User]:
    return (
        User.objects.filter(email=email)
        .annotate(**{SIGN_IN_HAS_MFA: second_factor_exists(), SIGN_IN_STAFF_GROUP: staff_group_exists()})
        .order_by("pk")[:1]  # as .first()
    )


@dataclass(frozen=True)
class _CompiledRead:
    """`_sign_in_read`'s statement, compiled by the ORM once per database, and what the ORM
    would do with its row: the fields' attribute names, the annotations' columns, the
    database's converters (SQLite's text UUIDs and timestamps, its 0/1 for booleans)."""

    sql: str
    params: tuple[Any, ...]
    email_index: int
    fields: tuple[int, int, tuple[str, ...]]  # first column, end, attribute names
    annotations: tuple[tuple[str, int], ...]
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]


_compiled_reads: dict[str, _CompiledRead | None] = {}
_EMAIL_MARKER = "sign-in-read.marker@invalid.invalid"


def _compile_read(using: str) -> _CompiledRead | None:
    compiler = _sign_in_read(_EMAIL_MARKER).query.get_compiler(using=using)
    sql, params = compiler.as_sql()
    positions = [index for index, value in enumerate(params) if value == _EMAIL_MARKER]
    klass_info = compiler.klass_info
    if len(positions) != 1 or klass_info is None or klass_info.get("related_klass_infos"):
        return None  # not the shape this reader knows: the ORM reads it (never the case today)
    select_fields = klass_info["select_fields"]
    start, end = select_fields[0], select_fields[-1] + 1
    names = tuple(column[0].target.attname for column in compiler.select[start:end])
    expressions = [column[0] for column in compiler.select[: compiler.col_count]]
    converters = tuple(
        (position, tuple(functions), expression)
        for position, (functions, expression) in compiler.get_converters(expressions).items()
    )
    return _CompiledRead(
        sql=sql,
        params=tuple(params),
        email_index=positions[0],
        fields=(start, end, names),
        annotations=tuple(compiler.annotation_col_map.items()),
        converters=converters,
    )


def user_for_sign_in(email: str) -> User | None:
    """The account signing in with this address (active or not), or None.

    Read once per password sign-in, with what the sign-in asks of it afterwards in the same
    statement: whether it has a second factor (`sign_in_has_second_factor`) and whether it
    is in a staff group (identity.reauth.is_staff_member). The throttle, the authentication
    backend (identity.email_backend.SignInLookup) and the sign-in page share this one read.

    The statement is the ORM's (`_sign_in_read`), compiled once per database and process
    instead of at every sign-in (compiling its two EXISTS cost more CPU than running it);
    the row becomes a User exactly as the ORM makes it (`Model.from_db`, the database's
    converters, the annotations as attributes). tests/test_sign_in_account_read.py compares
    the two.
    """
    email = normalize_email(email)
    if not email:
        return None
    using = router.db_for_read(User)
    if using not in _compiled_reads:
        _compiled_reads[using] = _compile_read(using)
    compiled = _compiled_reads[using]
    if compiled is None:
        return _sign_in_read(email).first()
    params = list(compiled.params)
    params[compiled.email_index] = email
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, params)
        fetched = cursor.fetchone()
    if fetched is None:
        return None
    row = list(fetched)
    for position, functions, expression in compiled.converters:
        value = row[position]
        for function in functions:
            value = function(value, expression, connection)
        row[position] = value
    start, end, names = compiled.fields
    user = User.from_db(using, list(names), row[start:end])
    for name, position in compiled.annotations:
        setattr(user, name, row[position])
    return user


def sign_in_has_second_factor(user: User) -> bool:
    """Whether the account has an active second factor: the answer `user_for_sign_in` read
    with the account, or identity.mfa.selectors.user_has_mfa for an account read otherwise."""
    has_mfa = getattr(user, SIGN_IN_HAS_MFA, None)
    if isinstance(has_mfa, bool):
        return has_mfa
    return user_has_mfa(user)


def session_login(*, request: HttpRequest, user: User, amr: list[str]) -> bool:
    """Open a browser session and remember when and how the resident authenticated.

    The session is also a record (identity.sessions.BrowserSession) whose `sid` the
    Django session holds: it goes into ID tokens and lets the session be ended from
    anywhere (sign-out everywhere, revocation from the account pages).

    Returns whether the account is staff (identity.reauth.is_staff_member), which the
    staff audit has just checked: the sign-in page needs it too and need not ask again.
    """

    previous_sid = request.session.get(SESSION_SID)  # read before login() may flush it
    auth_time = int(time.time())
    with transaction.atomic():
        django_login(request, user, backend="identity.email_backend.EmailBackend")
        # A second step someone else left half-finished in this browser (shared computer)
        # must not outlive this sign-in: it would be offered to this session's step-up.
        pending_clear(request)
        request.session[SESSION_AUTH_TIME] = auth_time
        request.session[SESSION_AMR] = amr
        record = browser_session_open(
            request=request, user=user, amr=amr, auth_time=auth_time, previous_sid=previous_sid
        )
        # Staff sign-ins are audited apart (identity.reauth: ids and methods only).
        return staff_sign_in_audit(user=user, amr=amr, session_id=record.pk)


def login_record_success(
    *, user: User, ip: str = "", known_device: bool = False, method: str = "password"
) -> None:
    """A completed sign-in: `method` is "password" (with its second factor if any) or
    "passkey"; FranceConnect records its own with method "franceconnect"."""
    audit_log(
        event="login.succeeded",
        subject_user=user,
        ip=ip,
        data={"known_device": known_device, "method": method},
    )


def login_record_failure(*, user: User | None, ip: str = "", known_device: bool = False) -> None:
    """A wrong password (or an unknown address: `user` None; the address is never recorded)."""
    audit_log(
        event="login.failed",
        subject_user=user,
        ip=ip,
        data={"known_device": known_device, "known_account": user is not None},
    )


def login_record_blocked(*, user: User | None, ip: str = "", scope: str) -> None:
    """An attempt refused by a limit before the password was looked at."""
    audit_log(event="login.blocked", subject_user=user, ip=ip, data={"scope": scope})


def password_check_record_failure(*, user: User, ip: str = "") -> None:
    """A wrong current password typed by a signed-in session (password change)."""
    audit_log(event="password.check_failed", acting_user=user, subject_user=user, ip=ip)


def login_notify_new_device(
    *, user: User, known_device: bool, first_sign_in: bool, device: str, ip: str = ""
) -> bool:
    """After a full sign-in: email the resident when the browser is not a known device.

    A known device is a browser holding the signed known-device cookie for this account
    (identity.ratelimit.remember_device, set at every full sign-in): the first sign-in
    of each new browser is reported once. The very first sign-in of an account (no
    `last_login` yet, e.g. right after registration) is not. Returns whether it emailed.
    """

    if known_device or first_sign_in:
        return False
    with transaction.atomic():  # the audit row and the queued email together
        _notify_new_device(user=user, device=device, ip=ip)
    return True


def _notify_new_device(*, user: User, device: str, ip: str) -> None:
    audit_log(event="login.new_device_notified", subject_user=user, ip=ip)
    send_email(
        to=user.email,
        template="new_device",
        context={
            "given_name": user.given_name,
            "device": device,
            "when": timezone.now(),
            "sessions_url": absolute_url(reverse("identity:sessions")),
            "not_me_url": not_me_url(user=user, source="new_device"),
            "not_me_days": not_me_days(),
        },
        language=user.preferred_language,
    )


def login_record_lockout(*, user: User | None, ip: str = "", scope: str) -> None:
    audit_log(event="login.locked", subject_user=user, ip=ip, data={"scope": scope})


def session_logout(*, request: HttpRequest, ip: str = "") -> None:
    """End the browser session (the resident asked to sign out)."""

    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        audit_log(event="logout", acting_user=user, subject_user=user, ip=ip)
    django_logout(request)
