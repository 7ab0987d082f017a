from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from identity.models import User, normalize_email


class EmailBackend(ModelBackend):
    """Sign-in by email (case-insensitive). Legacy hashes are upgraded by check_password."""

    def authenticate(  # type: ignore[override]
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        email: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        login = email or username
        if not login or password is None:
            return None
        try:
            user = User.objects.get(email=normalize_email(login))
        except User.DoesNotExist:
            # Spend the same time as for a real account so timing does not reveal it.
            User().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
