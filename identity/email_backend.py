from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from identity.hashers import password_check_without_account
from identity.models import User, normalize_email


@dataclass(frozen=True)
class SignInLookup:
    """The account the sign-in form has already read for `email` (None: no account), handed
    to the backend so that it does not read it again (identity.signin.user_for_sign_in)."""

    email: str
    user: User | None


# The resident's row already read for this request with its browser session
# (identity.sessions.browser_session_check), while Django's auth.get_user runs.
_read_with_session: ContextVar[User | None] = ContextVar("read_with_session", default=None)


@contextmanager
def user_already_read(user: User) -> Iterator[None]:
    """While inside, `EmailBackend.get_user` of `user`'s id answers from `user` instead of
    selecting the row again: Django's `auth.get_user` keeps every check of its own (the
    backend path, `user_can_authenticate`, the session hash and its fallbacks)."""
    token = _read_with_session.set(user)
    try:
        yield
    finally:
        _read_with_session.reset(token)


class EmailBackend(ModelBackend):
    """Sign-in by email (case-insensitive). Legacy hashes are upgraded by check_password."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        email: str | None = None,
        lookup: SignInLookup | None = None,
        **kwargs: Any,
    ) -> User | None:
        login = email or username
        if not login or password is None:
            return None
        address = normalize_email(login)
        if lookup is not None and lookup.email == address:
            user = lookup.user
        else:
            user = User.objects.filter(email=address).first()
        if user is None or not user.has_usable_password():
            # The same work as checking a real account's password, so that timing tells
            # neither whether the address has an account nor whether it has a password
            # (tests/security/test_enumeration.py counts the Argon2 runs).
            password_check_without_account(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    def get_user(self, user_id: Any) -> User | None:
        read = _read_with_session.get()
        if read is not None and read.pk == user_id:
            # ModelBackend.get_user, on the row read with the browser session.
            return read if self.user_can_authenticate(read) else None
        return super().get_user(user_id)
