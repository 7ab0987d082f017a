from __future__ import annotations

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
