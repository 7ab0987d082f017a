"""The half-authenticated state between the password and the second factor.

After a correct password, a resident with a second factor is *not* signed in: the
Django session only holds a short-lived marker (user id, when the password was checked,
expiry, where to go next). Nothing reads it as a sign-in: `request.user` stays anonymous
until the second factor succeeds and identity.signin.session_login runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from identity.mfa import clock
from identity.models import User

SESSION_PENDING = "mfa.pending"
PENDING_SECONDS = 5 * 60


@dataclass(frozen=True)
class Pending:
    user: User
    password_at: int
    next_url: str


def pending_start(*, request: HttpRequest, user: User, next_url: str) -> None:
    # A new session key: a session id planted before the password was typed is worth nothing.
    request.session.cycle_key()
    now = int(clock.now())
    request.session[SESSION_PENDING] = {
        "user": str(user.pk),
        "password_at": now,
        "expires": now + PENDING_SECONDS,
        "next": next_url,
    }


def pending_get(request: HttpRequest) -> Pending | None:
    """The half-authenticated resident of this browser, if the marker is still valid."""
    data = request.session.get(SESSION_PENDING)
    if not isinstance(data, dict):
        return None
    if float(data.get("expires", 0)) <= clock.now():
        request.session.pop(SESSION_PENDING, None)
        return None
    user_id = data.get("user")
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id is not None else None
    if user is None:
        request.session.pop(SESSION_PENDING, None)
        return None
    return Pending(
        user=user, password_at=int(data.get("password_at", 0)), next_url=str(data.get("next") or "")
    )


def pending_clear(request: HttpRequest) -> None:
    request.session.pop(SESSION_PENDING, None)


def combined_amr(base: list[str], methods: list[str]) -> list[str]:
    """RFC 8176 methods of the session after a second factor: what was there, the new
    factor's, then "mfa"."""
    amr: list[str] = []
    for method in [*base, *methods, "mfa"]:
        if method not in amr:
            amr.append(method)
    return amr
