"""Reads of the identity app."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpRequest
from django.utils import timezone

from identity.models import EmailChange, User, normalize_email
from identity.sessions import SESSION_AMR, SESSION_AUTH_TIME


def session_auth_time(request: HttpRequest) -> datetime | None:
    """When the resident of this browser session last proved who they are."""
    value = request.session.get(SESSION_AUTH_TIME)
    if value is not None:
        return datetime.fromtimestamp(int(value), tz=UTC)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.last_login:
        return user.last_login
    return None


def session_amr(request: HttpRequest) -> list[str]:
    return list(request.session.get(SESSION_AMR) or [])


def user_by_email(email: str) -> User | None:
    """The resident signing in with this address, if any (active or not)."""

    email = normalize_email(email)
    if not email:
        return None
    return User.objects.filter(email=email).first()


def user_for_password_reset(email: str) -> User | None:
    """The resident a reset link may be sent to: any active account.

    Unlike Django's default, an account without a usable password may receive one too:
    that is how an account created through FranceConnect or by `create_dpo` chooses its
    first password (proving control of the mailbox, which the link also verifies).
    """
    user = user_by_email(email)
    if user is None or not user.is_active:
        return None
    return user


def email_change_pending(user: User) -> EmailChange | None:
    """The resident's change of address waiting for its link to be used, if any."""
    return (
        EmailChange.objects.filter(
            user=user, used_at__isnull=True, cancelled_at__isnull=True, expires_at__gt=timezone.now()
        )
        .order_by("-created_at")
        .first()
    )
